/*
 * From a parsed query (negation normal form, see query_tree.h) to SQL.
 *
 * Each node becomes a piece: an FTS5 expression that is true for the
 * matching rows (FTS_POS), one whose complement is wanted (FTS_NEG: FTS5
 * has no unary NOT), a location condition (LOC, folded with its siblings
 * into one EXISTS over locations), or an SQL condition. Text stays FTS5
 * as far up as it can: the AND of positive and negative text is
 * "p1 AND p2 NOT (n1 OR n2)", an OR of positive text is one FTS5 OR.
 * When the top level has positive text, it is the MATCH of a join with
 * fts, ranked by its bm25; otherwise text parts become
 * "m.rowid [NOT] IN (SELECT rowid FROM fts WHERE fts MATCH ?)", and
 * ranking (if the query has positive text anywhere) comes from a
 * materialized bm25 of all positive text terms, left-joined.
 *
 * Positive SQL leaves are plain comparisons (usable by indexes; NULL acts
 * as false since no NOT is above them); negative ones are
 * NOT coalesce(cond, 0), so a NULL column counts as "not matching".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/query.h"
#include "search/query_tree.h"

/* subject, sender, recipient, cc, body, filename, attachment */
#define WEIGHTS "3.0, 2.0, 1.0, 1.0, 1.0, 2.0, 0.5"
#define BM25 "bm25(fts, " WEIGHTS ")"

struct sbuf {
	char *s;
	size_t len, cap;
};

struct comp {
	struct search_param *params;
	int nparams, cap;
	int oom;
};

static void
sb_add(struct comp *c, struct sbuf *b, const char *s, size_t n)
{
	if (c->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 128;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		if ((p = realloc(b->s, cap)) == NULL) {
			c->oom = 1;
			return;
		}
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
sb_str(struct comp *c, struct sbuf *b, const char *s)
{
	sb_add(c, b, s, strlen(s));
}

static void
sb_sbuf(struct comp *c, struct sbuf *b, const struct sbuf *s)
{
	if (s->len)
		sb_add(c, b, s->s, s->len);
}

/* Appends "?K" for a new parameter. */
static void
sb_param(struct comp *c, struct sbuf *b, int type, const char *text, int64_t num)
{
	struct search_param *p;
	char k[16];

	if (c->oom)
		return;
	if (c->nparams == c->cap) {
		int cap = c->cap ? 2 * c->cap : 8;

		if ((p = realloc(c->params, (size_t)cap * sizeof *p)) == NULL) {
			c->oom = 1;
			return;
		}
		c->params = p;
		c->cap = cap;
	}
	p = &c->params[c->nparams];
	p->type = type;
	p->num = num;
	p->text = NULL;
	if (type == SEARCH_PARAM_TEXT && (p->text = strdup(text)) == NULL) {
		c->oom = 1;
		return;
	}
	c->nparams++;
	snprintf(k, sizeof k, "?%d", c->nparams);
	sb_str(c, b, k);
}

enum { P_FTS_POS, P_FTS_NEG, P_LOC_FOLDER, P_LOC_SOURCE, P_SQL };

struct piece {
	int type;
	int composite;		/* FTS: needs parentheses as an operand */
	struct sbuf s;
};

/* Adds FTS expression P to B as an operand. */
static void
sb_operand(struct comp *c, struct sbuf *b, const struct piece *p)
{
	if (p->composite)
		sb_str(c, b, "(");
	sb_sbuf(c, b, &p->s);
	if (p->composite)
		sb_str(c, b, ")");
}

static void
sb_fts_in(struct comp *c, struct sbuf *b, const struct sbuf *fts, int not)
{
	sb_str(c, b, not ? "m.rowid NOT IN (SELECT rowid FROM fts WHERE fts MATCH " :
	    "m.rowid IN (SELECT rowid FROM fts WHERE fts MATCH ");
	sb_param(c, b, SEARCH_PARAM_TEXT, fts->s, 0);
	sb_str(c, b, ")");
}

static void
sb_exists(struct comp *c, struct sbuf *b, const struct sbuf *f, const struct sbuf *s,
    int not)
{
	/* By the message's hash, always: a message has a location or two,
	 * while a source or a folder holds most of the archive (without
	 * statistics SQLite chose locations(source, folder) and read every
	 * location of the source for each message). */
	sb_str(c, b, not ? "NOT EXISTS (SELECT 1 FROM locations l INDEXED BY locations_hash"
	    " WHERE l.hash = m.hash" :
	    "EXISTS (SELECT 1 FROM locations l INDEXED BY locations_hash WHERE l.hash = m.hash");
	if (f) {
		sb_str(c, b, " AND ");
		sb_sbuf(c, b, f);
	}
	if (s) {
		sb_str(c, b, " AND ");
		sb_sbuf(c, b, s);
	}
	sb_str(c, b, ")");
}

static void compile(struct comp *c, const struct qnode *n, struct piece *out);

/* "COL OP ?k" (or "COL OP 0" when !PARAM), negated as described above. */
static void
leaf_cmp(struct comp *c, struct piece *out, int neg, const char *col, const char *op,
    int param, int64_t num)
{
	out->type = P_SQL;
	sb_str(c, &out->s, neg ? "NOT coalesce(" : "");
	sb_str(c, &out->s, col);
	sb_str(c, &out->s, op);
	if (param)
		sb_param(c, &out->s, SEARCH_PARAM_INT, NULL, num);
	else
		sb_str(c, &out->s, "0");
	sb_str(c, &out->s, neg ? ", 0)" : "");
}

static void
leaf(struct comp *c, const struct qnode *n, struct piece *out)
{
	struct sbuf cond = { 0 };

	switch (n->kind) {
	case Q_TEXT:
		out->type = n->neg ? P_FTS_NEG : P_FTS_POS;
		sb_str(c, &out->s, n->text);
		return;
	case Q_FOLDER:
	case Q_SOURCE:
		if (n->kind == Q_SOURCE) {
			sb_str(c, &cond, "l.source = ");
			sb_param(c, &cond, SEARCH_PARAM_TEXT, n->text, 0);
		} else if (n->prefix) {
			char k[16];

			sb_str(c, &cond, "substr(l.folder, 1, length(");
			sb_param(c, &cond, SEARCH_PARAM_TEXT, n->text, 0);
			snprintf(k, sizeof k, "?%d", c->nparams);
			sb_str(c, &cond, ")) = ");
			sb_str(c, &cond, k);
		} else {
			sb_str(c, &cond, "l.folder = ");
			sb_param(c, &cond, SEARCH_PARAM_TEXT, n->inbox ? "INBOX" : n->text, 0);
			if (n->inbox)
				sb_str(c, &cond, " COLLATE NOCASE");
		}
		if (n->neg) {
			out->type = P_SQL;
			sb_exists(c, &out->s, n->kind == Q_FOLDER ? &cond : NULL,
			    n->kind == Q_SOURCE ? &cond : NULL, 1);
			free(cond.s);
		} else {
			out->type = n->kind == Q_FOLDER ? P_LOC_FOLDER : P_LOC_SOURCE;
			out->s = cond;
		}
		return;
	case Q_ATTACH:
		leaf_cmp(c, out, n->neg, "m.attachments", " > ", 0, 0);
		return;
	case Q_LARGER:
		leaf_cmp(c, out, n->neg, "m.size", " > ", 1, n->num);
		return;
	case Q_SMALLER:
		leaf_cmp(c, out, n->neg, "m.size", " < ", 1, n->num);
		return;
	case Q_AFTER:
		leaf_cmp(c, out, n->neg, "m.sort_date", " >= ", 1, n->num);
		return;
	case Q_BEFORE:
		leaf_cmp(c, out, n->neg, "m.sort_date", " < ", 1, n->num);
		return;
	default:
		return;
	}
}

/*
 * The conjunction of pieces K[0..N): POS, the AND of the positive text
 * (empty if none); NEG, the OR of the negative text; COND, the AND of the
 * rest as SQL. Consumes the pieces.
 */
struct split {
	struct sbuf pos, neg, cond;
	int npos, nneg;
};

static void
cond_and(struct comp *c, struct split *sp)
{
	if (sp->cond.len)
		sb_str(c, &sp->cond, " AND ");
}

static void
split_and(struct comp *c, struct piece *k, int n, struct split *sp)
{
	int i, folder = -1, source = -1;

	memset(sp, 0, sizeof *sp);
	for (i = 0; i < n; i++) {
		switch (k[i].type) {
		case P_FTS_POS:
			if (sp->npos++)
				sb_str(c, &sp->pos, " AND ");
			sb_operand(c, &sp->pos, &k[i]);
			break;
		case P_FTS_NEG:
			if (sp->nneg++)
				sb_str(c, &sp->neg, " OR ");
			sb_operand(c, &sp->neg, &k[i]);
			break;
		case P_LOC_FOLDER:
			if (folder < 0)
				folder = i;
			break;
		case P_LOC_SOURCE:
			if (source < 0)
				source = i;
			break;
		}
	}
	/* folder: and source: together mean that folder of that source */
	if (folder >= 0 || source >= 0) {
		cond_and(c, sp);
		sb_exists(c, &sp->cond, folder >= 0 ? &k[folder].s : NULL,
		    source >= 0 ? &k[source].s : NULL, 0);
	}
	for (i = 0; i < n; i++) {
		if ((k[i].type == P_LOC_FOLDER && i != folder) ||
		    (k[i].type == P_LOC_SOURCE && i != source)) {
			cond_and(c, sp);
			sb_exists(c, &sp->cond, k[i].type == P_LOC_FOLDER ? &k[i].s : NULL,
			    k[i].type == P_LOC_SOURCE ? &k[i].s : NULL, 0);
		} else if (k[i].type == P_SQL) {
			cond_and(c, sp);
			sb_sbuf(c, &sp->cond, &k[i].s);
		}
		free(k[i].s.s);
	}
}

/* POS NOT (NEG) into B */
static void
sb_pos_not_neg(struct comp *c, struct sbuf *b, const struct split *sp)
{
	sb_sbuf(c, b, &sp->pos);
	if (sp->nneg) {
		sb_str(c, b, " NOT ");
		if (sp->nneg > 1)
			sb_str(c, b, "(");
		sb_sbuf(c, b, &sp->neg);
		if (sp->nneg > 1)
			sb_str(c, b, ")");
	}
}

static struct piece *
compile_kids(struct comp *c, const struct qnode *n)
{
	struct piece *k = calloc((size_t)n->nkids, sizeof *k);
	int i;

	if (k == NULL) {
		c->oom = 1;
		return NULL;
	}
	for (i = 0; i < n->nkids; i++)
		compile(c, n->kids[i], &k[i]);
	return k;
}

static void
compile_and(struct comp *c, const struct qnode *n, struct piece *out)
{
	struct piece *k = compile_kids(c, n);
	struct split sp;

	if (k == NULL)
		return;
	split_and(c, k, n->nkids, &sp);
	free(k);
	out->composite = 1;
	if (sp.cond.len == 0 && sp.npos) {
		out->type = P_FTS_POS;
		sb_pos_not_neg(c, &out->s, &sp);
	} else if (sp.cond.len == 0) {
		out->type = P_FTS_NEG;
		out->composite = sp.nneg > 1;
		sb_sbuf(c, &out->s, &sp.neg);
	} else {
		struct sbuf fts = { 0 };

		out->type = P_SQL;
		sb_str(c, &out->s, "(");
		if (sp.npos) {
			sb_pos_not_neg(c, &fts, &sp);
			sb_fts_in(c, &out->s, &fts, 0);
			sb_str(c, &out->s, " AND ");
		} else if (sp.nneg) {
			sb_fts_in(c, &out->s, &sp.neg, 1);
			sb_str(c, &out->s, " AND ");
		}
		sb_sbuf(c, &out->s, &sp.cond);
		sb_str(c, &out->s, ")");
		free(fts.s);
	}
	free(sp.pos.s);
	free(sp.neg.s);
	free(sp.cond.s);
}

static void
compile_or(struct comp *c, const struct qnode *n, struct piece *out)
{
	struct piece *k = compile_kids(c, n);
	struct sbuf pos = { 0 }, neg = { 0 };
	int i, npos = 0, nneg = 0, nother = 0;

	if (k == NULL)
		return;
	for (i = 0; i < n->nkids; i++) {
		if (k[i].type == P_FTS_POS) {
			if (npos++)
				sb_str(c, &pos, " OR ");
			sb_operand(c, &pos, &k[i]);
		} else if (k[i].type == P_FTS_NEG) {
			/* NOT a OR NOT b = NOT (a AND b) */
			if (nneg++)
				sb_str(c, &neg, " AND ");
			sb_operand(c, &neg, &k[i]);
		} else {
			nother++;
		}
	}
	out->composite = 1;
	if (nneg == 0 && nother == 0) {
		out->type = P_FTS_POS;
		sb_sbuf(c, &out->s, &pos);
	} else if (npos == 0 && nother == 0) {
		out->type = P_FTS_NEG;
		sb_sbuf(c, &out->s, &neg);
	} else {
		out->type = P_SQL;
		nother = 0;
		sb_str(c, &out->s, "(");
		if (npos)
			sb_fts_in(c, &out->s, &pos, 0);
		if (nneg) {
			if (npos)
				sb_str(c, &out->s, " OR ");
			sb_fts_in(c, &out->s, &neg, 1);
		}
		for (i = 0; i < n->nkids; i++) {
			if (k[i].type == P_FTS_POS || k[i].type == P_FTS_NEG)
				continue;
			if (npos || nneg || nother++ > 0)
				sb_str(c, &out->s, " OR ");
			if (k[i].type == P_SQL)
				sb_sbuf(c, &out->s, &k[i].s);
			else
				sb_exists(c, &out->s, k[i].type == P_LOC_FOLDER ? &k[i].s : NULL,
				    k[i].type == P_LOC_SOURCE ? &k[i].s : NULL, 0);
		}
		sb_str(c, &out->s, ")");
	}
	for (i = 0; i < n->nkids; i++)
		free(k[i].s.s);
	free(k);
	free(pos.s);
	free(neg.s);
}

static void
compile(struct comp *c, const struct qnode *n, struct piece *out)
{
	memset(out, 0, sizeof *out);
	if (n->kind == Q_AND)
		compile_and(c, n, out);
	else if (n->kind == Q_OR)
		compile_or(c, n, out);
	else
		leaf(c, n, out);
}

/* The OR of every positive text leaf under N, for ranking. */
static void
positive_text(struct comp *c, const struct qnode *n, struct sbuf *b, int *count)
{
	int i;

	if (n->kind == Q_AND || n->kind == Q_OR) {
		for (i = 0; i < n->nkids; i++)
			positive_text(c, n->kids[i], b, count);
	} else if (n->kind == Q_TEXT && !n->neg) {
		if ((*count)++)
			sb_str(c, b, " OR ");
		sb_str(c, b, n->text);
	}
}

/*
 * Assembles the statement. The core selects (id, hash, rank, sort_date)
 * in result order, with the caller's LIMIT/OFFSET; with a snippet, the
 * core is a materialized page and the snippet is computed for its rows
 * only (snippet() over every match before the sort would cost more than
 * the search), from the same MATCH restricted to the row.
 */
static void
build(struct comp *c, const struct search_query *q, const struct search_opts *o,
    struct sbuf *b, int *ranked)
{
	struct qnode *const *kids;
	struct piece *k;
	struct split sp;
	struct sbuf fts = { 0 }, cond = { 0 }, rank = { 0 }, core = { 0 };
	const char *snippet = o ? o->snippet : NULL;
	int n, i, nrank = 0, match = 0;

	*ranked = 0;
	memset(&sp, 0, sizeof sp);
	if (q->root) {
		if (q->root->kind == Q_AND) {
			kids = q->root->kids;
			n = q->root->nkids;
		} else {
			kids = &q->root;
			n = 1;
		}
		if ((k = calloc((size_t)n, sizeof *k)) == NULL) {
			c->oom = 1;
			return;
		}
		for (i = 0; i < n; i++)
			compile(c, kids[i], &k[i]);
		split_and(c, k, n, &sp);
		free(k);
	}
	if (sp.npos && !sp.cond.len && o && o->limit > 0) {
		/*
		 * Text only, one page: ranked in fts alone, and only the rows
		 * that can be on the page (rank up to the page's last one, so
		 * ties are broken by date as below) looked up in messages. A
		 * common word matches tens of thousands of messages; looking
		 * each one up for its date cost more than the search. bm25
		 * itself is asked only for the matches whose bound can reach
		 * the page (bm25_topk, search/rank.h): its lookup of each
		 * row's length was most of what was left. K counts the rows
		 * up to the page's last (vault.search takes any integer).
		 */
		int64_t off = o->offset > 0 ? o->offset : 0;
		int64_t k = o->limit > INT64_MAX - off ? INT64_MAX : o->limit + off;

		*ranked = 1;
		sb_pos_not_neg(c, &fts, &sp);
		sb_str(c, b, "WITH hit(id, rank) AS MATERIALIZED (SELECT rowid, " BM25
		    " FROM fts WHERE fts MATCH ");
		sb_param(c, b, SEARCH_PARAM_TEXT, fts.s, 0);
		match = c->nparams;
		sb_str(c, b, " AND bm25_topk(fts, ");
		sb_param(c, b, SEARCH_PARAM_INT, NULL, k);
		sb_str(c, b, ", " WEIGHTS "))");
		sb_str(c, &core, "SELECT m.rowid AS rowid, m.hash AS hash, hit.rank AS rank,"
		    " m.sort_date AS sort_date FROM hit JOIN messages m ON m.rowid = hit.id"
		    " WHERE hit.rank <= coalesce((SELECT rank FROM hit ORDER BY rank LIMIT 1 OFFSET ");
		sb_param(c, &core, SEARCH_PARAM_INT, NULL, k - 1);
		sb_str(c, &core, "), 9e999) ORDER BY 3, 4 DESC, 1 DESC");
	} else if (sp.npos) {
		/* one MATCH, joined with messages */
		*ranked = 1;
		sb_pos_not_neg(c, &fts, &sp);
		sb_str(c, &core, "SELECT m.rowid AS rowid, m.hash AS hash, " BM25 " AS rank,"
		    " m.sort_date AS sort_date FROM fts JOIN messages m ON m.rowid = fts.rowid WHERE fts MATCH ");
		sb_param(c, &core, SEARCH_PARAM_TEXT, fts.s, 0);
		match = c->nparams;
		if (sp.cond.len) {
			sb_str(c, &core, " AND ");
			sb_sbuf(c, &core, &sp.cond);
		}
		sb_str(c, &core, " ORDER BY 3, 4 DESC, 1 DESC");
	} else {
		if (sp.nneg) {
			sb_fts_in(c, &cond, &sp.neg, 1);
			if (sp.cond.len)
				sb_str(c, &cond, " AND ");
		}
		sb_sbuf(c, &cond, &sp.cond);
		if (q->root)
			positive_text(c, q->root, &rank, &nrank);
		if (nrank) {
			/* ranked by the positive text terms, wherever they are */
			*ranked = 1;
			sb_str(c, b, "WITH r(id, rank) AS MATERIALIZED (SELECT rowid, " BM25
			    " FROM fts WHERE fts MATCH ");
			sb_param(c, b, SEARCH_PARAM_TEXT, rank.s, 0);
			match = c->nparams;
			sb_str(c, b, ")");
			sb_str(c, &core, "SELECT m.rowid AS rowid, m.hash AS hash, r.rank AS rank,"
			    " m.sort_date AS sort_date FROM messages m"
			    " LEFT JOIN r ON r.id = m.rowid WHERE ");
			sb_sbuf(c, &core, &cond);
			sb_str(c, &core, " ORDER BY r.rank IS NULL, 3, 4 DESC, 1 DESC");
		} else {
			sb_str(c, &core, "SELECT m.rowid AS rowid, m.hash AS hash, NULL AS rank,"
			    " m.sort_date AS sort_date FROM messages m");
			if (cond.len) {
				sb_str(c, &core, " WHERE ");
				sb_sbuf(c, &core, &cond);
			}
			sb_str(c, &core, " ORDER BY 4 DESC, 1 DESC");
		}
	}
	if (o && (o->limit > 0 || o->offset > 0)) {
		sb_str(c, &core, " LIMIT ");
		sb_param(c, &core, SEARCH_PARAM_INT, NULL, o->limit > 0 ? o->limit : -1);
		sb_str(c, &core, " OFFSET ");
		sb_param(c, &core, SEARCH_PARAM_INT, NULL, o->offset > 0 ? o->offset : 0);
	}
	if (snippet == NULL) {
		if (b->len)
			sb_str(c, b, " ");
		sb_sbuf(c, b, &core);
	} else {
		char k[16];

		sb_str(c, b, b->len ? ", " : "WITH ");
		sb_str(c, b, "page(id, hash, rank, sort_date) AS MATERIALIZED (");
		sb_sbuf(c, b, &core);
		sb_str(c, b, ") SELECT id AS rowid, hash, rank, sort_date, ");
		if (match) {
			snprintf(k, sizeof k, "?%d", match);
			sb_str(c, b, "(SELECT ");
			sb_str(c, b, snippet);
			sb_str(c, b, " FROM fts WHERE fts MATCH ");
			sb_str(c, b, k);
			sb_str(c, b, " AND fts.rowid = page.id)");
		} else {
			sb_str(c, b, "NULL");
		}
		sb_str(c, b, " AS snippet FROM page ORDER BY rank IS NULL, rank, sort_date DESC,"
		    " id DESC");
	}
	free(sp.pos.s);
	free(sp.neg.s);
	free(sp.cond.s);
	free(fts.s);
	free(cond.s);
	free(rank.s);
	free(core.s);
}

int
search_query_sql(const struct search_query *q, const struct search_opts *opts,
    struct search_sql *out, char *err, size_t errlen)
{
	struct comp c = { 0 };
	struct sbuf b = { 0 };
	int ranked = 0;

	memset(out, 0, sizeof *out);
	build(&c, q, opts, &b, &ranked);
	out->params = c.params;
	out->nparams = c.nparams;
	if (c.oom || b.s == NULL) {
		free(b.s);
		search_sql_free(out);
		if (err && errlen)
			snprintf(err, errlen, "out of memory");
		return -1;
	}
	out->sql = b.s;
	out->ranked = ranked;
	return 0;
}

int
search_sql_bind(sqlite3_stmt *st, const struct search_sql *s)
{
	int i, rc = SQLITE_OK;

	for (i = 0; i < s->nparams && rc == SQLITE_OK; i++) {
		const struct search_param *p = &s->params[i];

		if (p->type == SEARCH_PARAM_TEXT)
			rc = sqlite3_bind_text(st, i + 1, p->text, -1, SQLITE_TRANSIENT);
		else
			rc = sqlite3_bind_int64(st, i + 1, p->num);
	}
	return rc;
}

void
search_sql_free(struct search_sql *s)
{
	int i;

	if (s == NULL)
		return;
	for (i = 0; i < s->nparams; i++)
		free(s->params[i].text);
	free(s->params);
	free(s->sql);
	memset(s, 0, sizeof *s);
}
