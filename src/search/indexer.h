#ifndef EMAILVAULT_SEARCH_INDEXER_H
#define EMAILVAULT_SEARCH_INDEXER_H
/*
 * Filling the full-text index off the network path. Archiving commits a
 * message first (messages.indexed = 0); the indexer then reads its blob,
 * extracts the text (search/extract.c) and writes one FTS5 row per distinct
 * message, in batches, on its own connection to archive.db. The engine runs
 * it on a worker thread; `emailvault reindex` without an engine runs the
 * same steps in the foreground.
 */
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

/* ---- one indexing session: a connection, a store reader, limits -------- */

struct index_run;

struct index_run *index_run_open(const char *data_dir, char *err, size_t errlen);
void index_run_close(struct index_run *r);
/*
 * Indexes up to MAX messages not indexed yet, in one transaction. Returns
 * how many were done (0: nothing left), or -1 with ERR (the database could
 * not be written; try again later). A message whose blob is missing is
 * marked (indexed = 2, index_note says why) so it is not tried forever.
 */
int index_run_step(struct index_run *r, int max, char *err, size_t errlen);
/* Whether a step starts extracting the next batch while it writes its own
 * (on by default): faster on several cores, but it takes them from
 * whatever else runs. */
void index_run_set_ahead(struct index_run *r, int on);
/* Messages not indexed yet; -1 on error. */
int64_t index_run_lag(struct index_run *r);
/* The same, counted up to LIMIT at most (the indexer's rest asks only
 * whether there are that many). */
int64_t index_run_backlog(struct index_run *r, int64_t limit);
/* Marks every message to be indexed again and empties the index. */
int index_run_reset(struct index_run *r, char *err, size_t errlen);
/* The same on any connection to archive.db (the engine's own). */
int index_reset(sqlite3 *db, char *err, size_t errlen);

/*
 * How long the indexer thread rests after a batch of ROWS that took TOOK
 * seconds, with BACKLOG messages still to do: while messages are being
 * imported (ARCHIVING), as long as the batch took, so that on a small
 * machine the import has the CPU at least half the time; but not while
 * the backlog, at the batch's pace, would take over INDEX_CATCH_UP_S to
 * index (the index must catch up soon after the import ends). 0: go on.
 */
#define INDEX_CATCH_UP_S 3.0
double index_rest(double took, int rows, int64_t backlog, int archiving);

/* ---- the engine's worker thread ---------------------------------------- */

struct indexer;

struct indexer_stats {
	uint64_t indexed;		/* messages indexed by this thread */
	uint64_t missing;		/* ... whose blob could not be read */
	int busy;			/* working now (not waiting for new mail) */
	char last_error[256];		/* "" if none */
};

/* Starts the thread; NULL with ERR. */
struct indexer *indexer_start(const char *data_dir, char *err, size_t errlen);
/* New messages were committed (or the index was reset): look now. */
void indexer_poke(struct indexer *ix);
void indexer_get_stats(struct indexer *ix, struct indexer_stats *out);
/* Stops the thread (finishing its current batch) and frees it. */
void indexer_stop(struct indexer *ix);

/* The engine's indexer, if one runs (for the Lua binding). */
struct indexer *indexer_current(void);

#endif
