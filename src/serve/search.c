/*
 * SEARCH in the IMAP view: the keys (imapd_args.c) as one SQL statement
 * over the mailbox's UIDs and the messages. Flags, dates and sizes are
 * columns; SUBJECT, FROM, TO, CC, BCC, BODY and TEXT go to the full-text
 * index (docs/search.md), so they match words and word beginnings, as the
 * index tokenizes them (case and accents folded), not any substring, and
 * only messages the indexer has reached. Numbers are written into the
 * statement (they are ours); every string the client sent is bound.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "serve/serve.h"

#define MAX_BINDS 512

struct sql {
	char *buf;
	size_t len, cap;
	int oom;
	char *binds[MAX_BINDS];
	int nbinds;
	const struct mailbox *m;
	const struct imapd_search *q;
	char *err;
	size_t errlen;
};

static void
add(struct sql *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
add(struct sql *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (s->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < s->cap - s->len) {
			s->len += (size_t)n;
			return;
		}
		size_t cap = s->cap * 2 + (size_t)(n > 0 ? n : 0);
		char *b = n < 0 ? NULL : realloc(s->buf, cap);
		if (b == NULL) {
			s->oom = 1;
			return;
		}
		s->buf = b;
		s->cap = cap;
	}
}

/* Binds TEXT (copied) as the next parameter: "?". */
static int
bind_text(struct sql *s, const char *text)
{
	if (s->nbinds >= MAX_BINDS || (s->binds[s->nbinds] = strdup(text)) == NULL) {
		snprintf(s->err, s->errlen, "[LIMIT] too many search strings");
		return -1;
	}
	s->nbinds++;
	add(s, "?%d", s->nbinds + 1);	/* ?1 is the mailbox */
	return 0;
}

/* An FTS5 query for TEXT in COLUMNS: one phrase, its last word a prefix. */
static int
fts(struct sql *s, const char *columns, const char *text)
{
	size_t n = strlen(text), o = 0;
	char *q = malloc(2 * n + strlen(columns) + 16);
	int rc;

	if (q == NULL) {
		snprintf(s->err, s->errlen, "[SERVERBUG] out of memory");
		return -1;
	}
	if (*columns)
		o += (size_t)sprintf(q, "%s : ", columns);
	q[o++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (text[i] == '"')
			q[o++] = '"';
		q[o++] = text[i];
	}
	q[o++] = '"';
	q[o++] = '*';
	q[o] = '\0';
	/* A string with no word in it selects everything, as a substring
	 * search for it would select nearly everything. */
	int words = 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)text[i] >= 0x80 || (text[i] >= '0' && text[i] <= '9') ||
		    ((text[i] | 0x20) >= 'a' && (text[i] | 0x20) <= 'z'))
			words = 1;
	if (!words) {
		free(q);
		add(s, "1");
		return 0;
	}
	add(s, "m.rowid IN (SELECT rowid FROM fts WHERE fts MATCH ");
	rc = bind_text(s, q);
	add(s, ")");
	free(q);
	return rc;
}

static int expr(struct sql *s, int k);

static void
day_range(struct sql *s, const char *col, enum imapd_search_op op, int64_t day, enum imapd_search_op before,
    enum imapd_search_op on)
{
	int64_t t = day * 86400;

	if (op == before)
		add(s, "(%s < %lld)", col, (long long)t);
	else if (op == on)
		add(s, "(%s >= %lld AND %s < %lld)", col, (long long)t, col, (long long)(t + 86400));
	else
		add(s, "(%s >= %lld)", col, (long long)t);
}

static void
uid_ranges(struct sql *s, const struct imapd_seqset *set, int seq)
{
	const struct mailbox *m = s->m;
	uint32_t maxuid = m->count ? m->uids[m->count - 1] : 0;
	int any = 0;

	add(s, "(");
	for (int i = 0; i < set->n; i++) {
		uint32_t lo = set->r[i].lo, hi = set->r[i].hi;
		if (seq) {
			lo = lo ? lo : m->count;
			hi = hi ? hi : m->count;
		} else {
			lo = lo ? lo : maxuid;
			hi = hi ? hi : maxuid;
		}
		if (lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (seq) {
			if (lo == 0 || lo > m->count)
				continue;
			if (hi > m->count)
				hi = m->count;
			lo = m->uids[lo - 1];
			hi = m->uids[hi - 1];
		}
		add(s, "%su.uid BETWEEN %u AND %u", any ? " OR " : "", lo, hi);
		any = 1;
	}
	add(s, "%s)", any ? "" : "0");
}

static int
expr(struct sql *s, int k)
{
	const struct imapd_search_key *key = &s->q->keys[k];

	switch (key->op) {
	case S_ALL:
		add(s, "1");
		return 0;
	case S_NONE:
		add(s, "0");
		return 0;
	case S_AND:
		add(s, "(");
		for (int c = key->a, first = 1; c >= 0; c = s->q->keys[c].next, first = 0) {
			if (!first)
				add(s, " AND ");
			if (expr(s, c) < 0)
				return -1;
		}
		add(s, ")");
		return 0;
	case S_OR:
		add(s, "(");
		if (expr(s, key->a) < 0)
			return -1;
		add(s, " OR ");
		if (expr(s, key->b) < 0)
			return -1;
		add(s, ")");
		return 0;
	case S_NOT:
		add(s, "NOT ");
		return expr(s, key->a);
	case S_FLAG:
	case S_UNFLAG: {
		char flag[160];
		size_t i;
		snprintf(flag, sizeof(flag), " %s ", key->arg);
		for (i = 0; flag[i]; i++)
			flag[i] = (char)((flag[i] >= 'A' && flag[i] <= 'Z') ? flag[i] + 32 : flag[i]);
		add(s, "(instr(' ' || lower(coalesce(u.flags, '')) || ' ', ");
		if (bind_text(s, flag) < 0)
			return -1;
		add(s, ") %s 0)", key->op == S_FLAG ? ">" : "=");
		return 0;
	}
	case S_BEFORE:
	case S_ON:
	case S_SINCE:
		day_range(s, "u.internaldate", key->op, key->num, S_BEFORE, S_ON);
		return 0;
	case S_SENTBEFORE:
	case S_SENTON:
	case S_SENTSINCE:
		day_range(s, "m.date_unix", key->op, key->num, S_SENTBEFORE, S_SENTON);
		return 0;
	case S_LARGER:
		add(s, "(m.size > %lld)", (long long)key->num);
		return 0;
	case S_SMALLER:
		add(s, "(m.size < %lld)", (long long)key->num);
		return 0;
	case S_SEQ:
	case S_UID:
		uid_ranges(s, key->set, key->op == S_SEQ);
		return 0;
	case S_TEXT:
		return fts(s, "", key->arg);
	case S_BODY:
		return fts(s, "{body attachment}", key->arg);
	case S_SUBJECT:
		return fts(s, "subject", key->arg);
	case S_FROM:
		return fts(s, "sender", key->arg);
	case S_TO:
	case S_BCC:
		return fts(s, "recipient", key->arg);
	case S_CC:
		return fts(s, "cc", key->arg);
	case S_HEADER: {
		static const struct { const char *name, *col; } cols[] = {
			{ "subject", "subject" }, { "from", "sender" }, { "to", "recipient" },
			{ "bcc", "recipient" }, { "cc", "cc" },
		};
		for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
			if (strcasecmp(key->field, cols[i].name) == 0)
				return fts(s, cols[i].col, key->arg);
		if (strcasecmp(key->field, "message-id") == 0) {
			char id[1024];
			const char *a = key->arg;
			size_t l = strlen(a);
			if (l && a[0] == '<')
				a++, l--;
			if (l && a[l - 1] == '>')
				l--;
			snprintf(id, sizeof(id), "%.*s", (int)l, a);
			if (!*id) {
				add(s, "(m.message_id IS NOT NULL)");
				return 0;
			}
			add(s, "(m.message_id = ");
			if (bind_text(s, id) < 0)
				return -1;
			add(s, ")");
			return 0;
		}
		snprintf(s->err, s->errlen, "[CANNOT] SEARCH HEADER %.40s is not supported here "
		    "(From, To, Cc, Bcc, Subject and Message-ID are)", key->field);
		return -1;
	}
	}
	return -1;
}

int
search_run_keys(struct server *srv, const struct serve_user *u, struct mailbox *m,
    const struct imapd_search *keys, uint32_t **out, uint32_t *n, char *err, size_t errlen)
{
	struct sql s = { 0 };
	sqlite3_stmt *st = NULL;
	uint32_t cap = 0;
	int rc = -1;

	(void)u;
	*out = NULL;
	*n = 0;
	s.m = m;
	s.q = keys;
	s.err = err;
	s.errlen = errlen;
	if ((s.buf = malloc(s.cap = 512)) == NULL) {
		snprintf(err, errlen, "[SERVERBUG] out of memory");
		return -1;
	}
	add(&s, "SELECT u.uid FROM imap_uids u JOIN messages m ON m.hash = u.hash WHERE u.mailbox = ?1 "
	    "AND u.uid <= %u AND ", m->count ? m->uids[m->count - 1] : 0);
	if (expr(&s, keys->root) < 0)
		goto out;
	add(&s, " ORDER BY u.uid");
	if (s.oom) {
		snprintf(err, errlen, "[SERVERBUG] out of memory");
		goto out;
	}
	if (sqlite3_prepare_v2(srv->db, s.buf, -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "[SERVERBUG] cannot search: %s", sqlite3_errmsg(srv->db));
		goto out;
	}
	sqlite3_bind_int64(st, 1, m->id);
	for (int i = 0; i < s.nbinds; i++)
		sqlite3_bind_text(st, i + 2, s.binds[i], -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == cap) {
			uint32_t c = cap ? cap * 2 : 256;
			uint32_t *nv = realloc(*out, c * sizeof(**out));
			if (nv == NULL)
				break;
			*out = nv;
			cap = c;
		}
		(*out)[(*n)++] = (uint32_t)sqlite3_column_int64(st, 0);
	}
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "[SERVERBUG] search failed: %s", sqlite3_errmsg(srv->db));
		free(*out);
		*out = NULL;
		*n = 0;
		rc = -1;
	} else {
		rc = 0;
	}
out:
	sqlite3_finalize(st);
	for (int i = 0; i < s.nbinds; i++)
		free(s.binds[i]);
	free(s.buf);
	return rc;
}
