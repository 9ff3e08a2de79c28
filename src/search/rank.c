/*
 * bm25_topk (see rank.h): which rows of an FTS5 scan need their bm25.
 *
 * FTS5's bm25 of a row is
 *
 *     -sum over phrases i of idf[i] * f[i] * (k1 + 1) /
 *                              (f[i] + k1 * (1 - b + b * D / avgdl))
 *
 * with f[i] the weighted count of phrase i in the row and D the row's
 * length in tokens, read from fts_docsize: a lookup of about 1 us per row,
 * the whole cost of ranking a word found in tens of thousands of messages.
 * Each term falls as D grows, so the value computed with a D that is at
 * most the row's is at most its bm25: a bound. The positions give such a
 * D for free: a column holding an instance of a phrase of n tokens at
 * offset o has at least o + n tokens. A row whose bound is worse (higher)
 * than the K-th best exact value seen so far is worse than the final K-th
 * best too (that one only gets better), so it cannot be among the K best,
 * ties included: only the other rows get their length looked up, and
 * only those whose exact value is among the K best so far say 1 (bm25 is
 * then asked for a few hundred rows of a word in 50,000).
 *
 * The exact values kept here are computed with the formula above, in the
 * same order of operations as FTS5 (fts5_aux.c; for one phrase without
 * its idf, which scales every value alike), so they order rows as bm25 up to
 * the rounding of a compiler that fuses multiply-adds differently; the
 * comparison leaves a margin far above that. The value the caller ranks by
 * is bm25's own, asked only where this says 1.
 */
#include "search/rank.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define K1	1.2	/* FTS5's bm25 constants */
#define B	0.75
#define MARGIN	1e-9	/* relative: rounding differences are ~1e-15 */

struct topk {
	int nphrase, ncol;
	double avgdl;
	double *idf, *freq;	/* per phrase; freq: the current row's */
	int *psize;		/* tokens in each phrase */
	int *colend;		/* the current row: a lower bound of each column's size */
	sqlite3_int64 k;	/* K <= 0: no bound */
	double *heap;		/* max-heap of the best exact values, heap[0] the worst */
	sqlite3_int64 n, cap;
	sqlite3_int64 last;	/* the row of the last answer, for a second call */
	int has_last, last_answer;
};

static void
topk_free(void *p)
{
	struct topk *t = p;

	if (t == NULL)
		return;
	free(t->heap);
	free(t);
}

static int
count_cb(const Fts5ExtensionApi *api, Fts5Context *fts, void *ud)
{
	(void)api;
	(void)fts;
	(*(sqlite3_int64 *)ud)++;
	return SQLITE_OK;
}

/* The per-query part, computed as bm25 computes it. */
static int
topk_new(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_int64 k, struct topk **out)
{
	sqlite3_int64 nrow = 0, ntoken = 0;
	struct topk *t;
	size_t np, nc;
	int i, rc;

	*out = NULL;
	np = (size_t)api->xPhraseCount(fts);
	nc = (size_t)api->xColumnCount(fts);
	/* one block: the struct, then the doubles, then the ints */
	t = calloc(1, sizeof *t + 2 * np * sizeof(double) + (np + nc) * sizeof(int));
	if (t == NULL)
		return SQLITE_NOMEM;
	t->nphrase = (int)np;
	t->ncol = (int)nc;
	t->idf = (double *)(t + 1);
	t->freq = t->idf + np;
	t->psize = (int *)(t->freq + np);
	t->colend = t->psize + np;
	t->k = k;
	if ((rc = api->xRowCount(fts, &nrow)) == SQLITE_OK)
		rc = api->xColumnTotalSize(fts, -1, &ntoken);
	if (rc == SQLITE_OK)
		t->avgdl = (double)ntoken / (double)nrow;
	for (i = 0; rc == SQLITE_OK && i < t->nphrase; i++) {
		sqlite3_int64 nhit = 0;
		double idf;

		t->psize[i] = api->xPhraseSize(fts, i);
		/* one phrase: its idf scales every value alike, so 1 orders the
		 * rows as well, without a pass over its matches to count them */
		if (t->nphrase == 1) {
			t->idf[i] = 1.0;
			break;
		}
		if ((rc = api->xQueryPhrase(fts, i, &nhit, count_cb)) != SQLITE_OK)
			break;
		idf = log((nrow - nhit + 0.5) / (nhit + 0.5));
		if (idf <= 0.0)
			idf = 1e-6;
		t->idf[i] = idf;
	}
	if (rc != SQLITE_OK) {
		topk_free(t);
		return rc;
	}
	*out = t;
	return SQLITE_OK;
}

/* The score (bm25 without its sign) of the current row for length D. */
static double
score(const struct topk *t, double d)
{
	double s = 0.0;
	int i;

	for (i = 0; i < t->nphrase; i++)
		s += t->idf[i] * ((t->freq[i] * (K1 + 1.0)) /
		    (t->freq[i] + K1 * (1 - B + B * d / t->avgdl)));
	return s;
}

/* Keeps V if it is among the K best: 0 or SQLITE_NOMEM. */
static int
heap_add(struct topk *t, double v)
{
	sqlite3_int64 i, c;

	if (t->n == t->k) {
		if (v >= t->heap[0])
			return SQLITE_OK;
		/* replace the worst and sift it down */
		for (i = 0; (c = 2 * i + 1) < t->n; i = c) {
			if (c + 1 < t->n && t->heap[c + 1] > t->heap[c])
				c++;
			if (t->heap[c] <= v)
				break;
			t->heap[i] = t->heap[c];
		}
		t->heap[i] = v;
		return SQLITE_OK;
	}
	if (t->n == t->cap) {
		sqlite3_int64 cap = t->cap ? 2 * t->cap : 64;
		double *h;

		if (cap > t->k)
			cap = t->k;
		if ((h = realloc(t->heap, (size_t)cap * sizeof *h)) == NULL)
			return SQLITE_NOMEM;
		t->heap = h;
		t->cap = cap;
	}
	for (i = t->n++; i > 0 && t->heap[(i - 1) / 2] < v; i = (i - 1) / 2)
		t->heap[i] = t->heap[(i - 1) / 2];
	t->heap[i] = v;
	return SQLITE_OK;
}

/* V is worse than the K-th best so far, by more than rounding. */
static int
worse(const struct topk *t, double v)
{
	return v - t->heap[0] > MARGIN * fabs(t->heap[0]);
}

/* 1 if the current row may be among the K best, 0 if not: rc in *RC. */
static int
decide(const Fts5ExtensionApi *api, Fts5Context *fts, struct topk *t, int nval,
    sqlite3_value **val, int *rcp)
{
	int i, ip, full, dmin = 0, ntok = 0, rc;
	double v;

	if (t->k <= 0)
		return 1;
	memset(t->freq, 0, (size_t)t->nphrase * sizeof *t->freq);
	memset(t->colend, 0, (size_t)t->ncol * sizeof *t->colend);
	/* each phrase's positions as xInst has them (the same lists), read
	 * without building the merged array xInst needs */
	for (ip = 0; ip < t->nphrase; ip++) {
		Fts5PhraseIter it;
		int ic, io;

		if ((rc = api->xPhraseFirst(fts, ip, &it, &ic, &io)) != SQLITE_OK) {
			*rcp = rc;
			return 0;
		}
		for (; ic >= 0; api->xPhraseNext(fts, &it, &ic, &io)) {
			/* weights start at argument 1, as bm25's at its 0 */
			t->freq[ip] += nval > ic + 1 ? sqlite3_value_double(val[ic + 1]) : 1.0;
			if (ic < t->ncol && io + t->psize[ip] > t->colend[ic])
				t->colend[ic] = io + t->psize[ip];
		}
	}
	full = t->n == t->k;
	if (full) {
		for (i = 0; i < t->ncol; i++)
			dmin += t->colend[i];
		if (worse(t, -1.0 * score(t, (double)dmin)))
			return 0;
	}
	if ((rc = api->xColumnSize(fts, -1, &ntok)) != SQLITE_OK) {
		*rcp = rc;
		return 0;
	}
	v = -1.0 * score(t, (double)ntok);
	if (full && worse(t, v))
		return 0;
	*rcp = heap_add(t, v);
	return 1;
}

static void
bm25_topk(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx, int nval,
    sqlite3_value **val)
{
	struct topk *t;
	sqlite3_int64 row;
	int rc = SQLITE_OK, answer;

	if (nval < 1) {
		sqlite3_result_error(ctx, "bm25_topk: wants K", -1);
		return;
	}
	/* no MATCH, nothing to rank by (and FTS5's xRowid would crash) */
	if (api->xPhraseCount(fts) == 0) {
		sqlite3_result_int(ctx, 1);
		return;
	}
	t = api->xGetAuxdata(fts, 0);
	row = api->xRowid(fts);
	if (t == NULL) {
		if ((rc = topk_new(api, fts, sqlite3_value_int64(val[0]), &t)) == SQLITE_OK)
			rc = api->xSetAuxdata(fts, t, topk_free);	/* frees T on error */
		if (rc != SQLITE_OK) {
			sqlite3_result_error_code(ctx, rc);
			return;
		}
	}
	/* the same row again (SQLite may evaluate the call twice): the same
	 * answer, and its value is not kept twice */
	if (t->has_last && t->last == row) {
		sqlite3_result_int(ctx, t->last_answer);
		return;
	}
	answer = decide(api, fts, t, nval, val, &rc);
	if (rc != SQLITE_OK) {
		sqlite3_result_error_code(ctx, rc);
		return;
	}
	t->has_last = 1;
	t->last = row;
	t->last_answer = answer;
	sqlite3_result_int(ctx, answer);
}

int
search_rank_register(fts5_api *api)
{
	return api->xCreateFunction(api, "bm25_topk", NULL, bm25_topk, NULL);
}
