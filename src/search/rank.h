#ifndef EMAILVAULT_SEARCH_RANK_H
#define EMAILVAULT_SEARCH_RANK_H
/*
 * bm25_topk(fts, K, w0, w1, ...), an FTS5 auxiliary function: 1 when the
 * current row's bm25(fts, w0, w1, ...) can be among the K best (lowest)
 * of the rows the scan has shown it so far, 0 when it cannot. A page of
 * K ranked rows asks bm25 only for the rows where it says 1:
 *
 *     CASE WHEN bm25_topk(fts, K, w...) THEN bm25(fts, w...) END
 *
 * and the K best bm25 values of the scan are all among those (ties
 * included), so ordering them gives exactly bm25's first K. The point:
 * bm25 reads each row's column sizes (a lookup in fts_docsize); the bound
 * that rules a row out needs only its term frequencies and positions.
 * K <= 0 rules nothing out.
 */
#include <sqlite3.h>

/* Registers bm25_topk on the connection of API: SQLITE_OK or an error code. */
int search_rank_register(fts5_api *api);

#endif
