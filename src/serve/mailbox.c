/*
 * The IMAP view's mailbox tree and UIDs. A user sees `SOURCE/FOLDER` for
 * each folder of their sources, as it was on the server, and `All`, every
 * distinct message of those sources once.
 *
 * UIDs are the view's own, kept in archive.db (imap_mailboxes, imap_uids):
 * a location archived later gets the next UID, a UID once given is never
 * given to another message, and UIDVALIDITY only changes when All's set of
 * sources does (its UIDs would otherwise name different messages). The
 * archive never forgets a message, so nothing is ever expunged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "imap/utf7.h"
#include "serve/serve.h"

char *
mailbox_decode_name(const char *s, size_t len)
{
	char *out = malloc(IMAP_UTF7_DECODED_MAX(len));
	size_t n;

	if (out == NULL || imap_utf7_decode(s, len, out, IMAP_UTF7_DECODED_MAX(len), &n) < 0) {
		free(out);
		return NULL;
	}
	out[n] = '\0';
	return out;
}

char *
mailbox_encode_name(const char *utf8)
{
	size_t len = strlen(utf8), n;
	char *out = malloc(IMAP_UTF7_ENCODED_MAX(len));

	if (out == NULL || imap_utf7_encode(utf8, len, out, IMAP_UTF7_ENCODED_MAX(len), &n) < 0) {
		free(out);
		return NULL;
	}
	out[n] = '\0';
	return out;
}

static int
user_has_source(const struct serve_user *u, const char *source, size_t len)
{
	for (int i = 0; i < u->nsources; i++)
		if (strlen(u->sources[i]) == len && memcmp(u->sources[i], source, len) == 0)
			return 1;
	return 0;
}

/* ---- the tree ---------------------------------------------------------------------- */

static int
entry_cmp(const void *a, const void *b)
{
	const struct mailbox_entry *x = a, *y = b;

	if (x->all != y->all)
		return y->all - x->all;		/* All first */
	return strcmp(x->name, y->name);
}

static int
add_entry(struct mailbox_entry **v, int *n, int *cap, const char *name, size_t len, int noselect)
{
	for (int i = 0; i < *n; i++)
		if (strlen((*v)[i].name) == len && memcmp((*v)[i].name, name, len) == 0) {
			if (!noselect)
				(*v)[i].noselect = 0;
			return 0;
		}
	if (*n == *cap) {
		int c = *cap ? *cap * 2 : 32;
		struct mailbox_entry *nv = realloc(*v, (size_t)c * sizeof(*nv));
		if (nv == NULL)
			return -1;
		*v = nv;
		*cap = c;
	}
	struct mailbox_entry *e = &(*v)[*n];
	memset(e, 0, sizeof(*e));
	if ((e->name = malloc(len + 1)) == NULL)
		return -1;
	memcpy(e->name, name, len);
	e->name[len] = '\0';
	e->noselect = noselect;
	(*n)++;
	return 0;
}

int
mailbox_list(struct server *srv, const struct serve_user *u, struct mailbox_entry **out, int *n)
{
	static const char sql[] =
	    "SELECT source, name FROM folders WHERE source IN (SELECT value FROM json_each(?1)) "
	    "UNION SELECT DISTINCT source, folder FROM locations "
	    "WHERE source IN (SELECT value FROM json_each(?1))";
	struct mailbox_entry *v = NULL;
	int cnt = 0, cap = 0, rc;
	sqlite3_stmt *st;

	*out = NULL;
	*n = 0;
	if (add_entry(&v, &cnt, &cap, "All", 3, 0) < 0)
		goto fail;
	v[0].all = 1;
	for (int i = 0; i < u->nsources; i++)
		if (add_entry(&v, &cnt, &cap, u->sources[i], strlen(u->sources[i]), 1) < 0)
			goto fail;
	if (sqlite3_prepare_v2(srv->db, sql, -1, &st, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_bind_text(st, 1, u->sources_json, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *src = (const char *)sqlite3_column_text(st, 0);
		const char *folder = (const char *)sqlite3_column_text(st, 1);
		if (src == NULL || folder == NULL || !*folder)
			continue;
		size_t sl = strlen(src), fl = strlen(folder);
		char *full = malloc(sl + fl + 2);
		if (full == NULL)
			break;
		snprintf(full, sl + fl + 2, "%s/%s", src, folder);
		/* Parents of a/b/c that are no folder themselves. */
		for (size_t k = sl + 1; k < sl + 1 + fl; k++)
			if (full[k] == '/' && k > sl + 1)
				add_entry(&v, &cnt, &cap, full, k, 1);
		rc = add_entry(&v, &cnt, &cap, full, sl + 1 + fl, 0);
		free(full);
		if (rc < 0)
			break;
	}
	sqlite3_finalize(st);
	for (int i = 0; i < cnt; i++) {
		size_t l = strlen(v[i].name);
		for (int j = 0; j < cnt; j++)
			if (j != i && strncmp(v[j].name, v[i].name, l) == 0 && v[j].name[l] == '/')
				v[i].children = 1;
	}
	qsort(v, (size_t)cnt, sizeof(*v), entry_cmp);
	*out = v;
	*n = cnt;
	return 0;
fail:
	mailbox_list_free(v, cnt);
	return -1;
}

void
mailbox_list_free(struct mailbox_entry *e, int n)
{
	for (int i = 0; i < n; i++)
		free(e[i].name);
	free(e);
}

/* ---- opening and UIDs -------------------------------------------------------------- */

static int
folder_exists(struct server *srv, const char *source, const char *folder)
{
	sqlite3_stmt *st;
	int found = 0;

	if (sqlite3_prepare_v2(srv->db, "SELECT 1 FROM folders WHERE source = ?1 AND name = ?2 "
	    "UNION ALL SELECT 1 FROM locations WHERE source = ?1 AND folder = ?2 LIMIT 1", -1, &st,
	    NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, folder, -1, SQLITE_STATIC);
	found = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return found;
}

static uint32_t
new_uidvalidity(uint32_t old)
{
	uint32_t t = (uint32_t)time(NULL);

	return t > old ? t : old + 1;
}

/* The row of the mailbox (OWNER, NAME), made if missing; for All, reset
 * when its sources are not SOURCES any more. */
static int
mailbox_row(struct server *srv, struct mailbox *m, const char *owner, const char *sources)
{
	sqlite3_stmt *st;
	int rc, found = 0;
	uint32_t old = 0;
	const char *had = NULL;
	char *had_copy = NULL;

	if (sqlite3_prepare_v2(srv->db, "SELECT id, uidvalidity, next_uid, sources FROM "
	    "imap_mailboxes WHERE owner = ?1 AND name = ?2", -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, m->name, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		found = 1;
		m->id = sqlite3_column_int64(st, 0);
		old = m->uidvalidity = (uint32_t)sqlite3_column_int64(st, 1);
		m->uidnext = (uint32_t)sqlite3_column_int64(st, 2);
		had = (const char *)sqlite3_column_text(st, 3);
		had_copy = had ? strdup(had) : NULL;
	}
	sqlite3_finalize(st);
	if (found && (sources == NULL || (had_copy && strcmp(had_copy, sources) == 0))) {
		free(had_copy);
		return 0;
	}
	free(had_copy);
	if (!sqlite3_get_autocommit(srv->db))
		return -1;		/* someone's transaction is open: not now */
	m->uidvalidity = new_uidvalidity(old);
	m->uidnext = 1;
	if (sqlite3_exec(srv->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return -1;
	if (found) {
		char sql[160];
		snprintf(sql, sizeof(sql), "DELETE FROM imap_uids WHERE mailbox = %lld", (long long)m->id);
		rc = sqlite3_exec(srv->db, sql, NULL, NULL, NULL);
		if (rc == SQLITE_OK && sqlite3_prepare_v2(srv->db, "UPDATE imap_mailboxes SET "
		    "uidvalidity = ?2, next_uid = 1, sources = ?3 WHERE id = ?1", -1, &st, NULL) == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, m->id);
			sqlite3_bind_int64(st, 2, m->uidvalidity);
			sqlite3_bind_text(st, 3, sources, -1, SQLITE_STATIC);
			rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
			sqlite3_finalize(st);
		} else {
			rc = SQLITE_ERROR;
		}
	} else if (sqlite3_prepare_v2(srv->db, "INSERT INTO imap_mailboxes(owner, name, uidvalidity, "
	    "next_uid, sources) VALUES (?1, ?2, ?3, 1, ?4)", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, m->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, m->uidvalidity);
		sqlite3_bind_text(st, 4, sources, -1, SQLITE_STATIC);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
		sqlite3_finalize(st);
		m->id = sqlite3_last_insert_rowid(srv->db);
	} else {
		rc = SQLITE_ERROR;
	}
	if (rc != SQLITE_OK || sqlite3_exec(srv->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		sqlite3_exec(srv->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

int
mailbox_open(struct server *srv, const struct serve_user *u, const char *name, struct mailbox **out)
{
	struct mailbox *m;
	const char *slash = strchr(name, '/');
	int all = strcmp(name, "All") == 0;

	*out = NULL;
	if (!all && (slash == NULL || slash[1] == '\0' || !user_has_source(u, name,
	    (size_t)(slash - name))))
		return -1;
	if ((m = calloc(1, sizeof(*m))) == NULL || (m->name = strdup(name)) == NULL) {
		free(m);
		return -2;
	}
	m->synced_changes = -1;
	if (!all) {
		m->source = strndup(name, (size_t)(slash - name));
		m->folder = strdup(slash + 1);
		if (m->source == NULL || m->folder == NULL) {
			mailbox_free(m);
			return -2;
		}
		int ex = folder_exists(srv, m->source, m->folder);
		if (ex <= 0) {
			mailbox_free(m);
			return ex < 0 ? -2 : -1;
		}
	}
	if (mailbox_row(srv, m, all ? u->name : "", all ? u->sources_json : NULL) < 0) {
		mailbox_free(m);
		return -2;
	}
	*out = m;
	return 0;
}

void
mailbox_free(struct mailbox *m)
{
	if (m == NULL)
		return;
	free(m->name);
	free(m->source);
	free(m->folder);
	free(m->uids);
	free(m);
}

/* New locations get the next UIDs, in the order they were archived. */
static int
assign(struct server *srv, const struct serve_user *u, struct mailbox *m)
{
	static const char folder_sql[] =
	    "INSERT INTO imap_uids(mailbox, uid, hash, flags, internaldate, origin) "
	    "SELECT ?1, ?2 + row_number() OVER (ORDER BY l.uidvalidity, l.uid) - 1, l.hash, l.flags, "
	    "l.internaldate, l.uidvalidity || ':' || l.uid FROM locations l "
	    "WHERE l.source = ?3 AND l.folder = ?4 AND NOT EXISTS (SELECT 1 FROM imap_uids x "
	    "WHERE x.mailbox = ?1 AND x.origin = l.uidvalidity || ':' || l.uid)";
	static const char all_sql[] =
	    "INSERT INTO imap_uids(mailbox, uid, hash, flags, internaldate, origin) "
	    "SELECT ?1, ?2 + row_number() OVER (ORDER BY g.first, g.hash) - 1, g.hash, g.flags, "
	    "g.internaldate, g.hash FROM (SELECT l.hash AS hash, min(l.archived_at) AS first, "
	    "max(l.flags) AS flags, min(l.internaldate) AS internaldate FROM locations l "
	    "WHERE l.source IN (SELECT value FROM json_each(?3)) GROUP BY l.hash) g "
	    "WHERE NOT EXISTS (SELECT 1 FROM imap_uids x WHERE x.mailbox = ?1 AND x.origin = g.hash)";
	sqlite3_stmt *st;
	int rc;

	if (m->source) {
		/* Nothing new: as many locations as UIDs. */
		if (sqlite3_prepare_v2(srv->db, "SELECT count(*) FROM locations WHERE source = ?1 AND "
		    "folder = ?2", -1, &st, NULL) != SQLITE_OK)
			return -1;
		sqlite3_bind_text(st, 1, m->source, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, m->folder, -1, SQLITE_STATIC);
		int64_t have = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
		sqlite3_finalize(st);
		if (have == (int64_t)m->count)
			return 0;
	}
	if (!sqlite3_get_autocommit(srv->db))
		return 0;		/* a transaction of someone else's: next time */
	if (sqlite3_exec(srv->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return -1;
	/* next_uid as the database has it now, inside the transaction. */
	if (sqlite3_prepare_v2(srv->db, "SELECT next_uid FROM imap_mailboxes WHERE id = ?1", -1, &st,
	    NULL) != SQLITE_OK)
		goto fail;
	sqlite3_bind_int64(st, 1, m->id);
	int64_t next = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 1;
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(srv->db, m->source ? folder_sql : all_sql, -1, &st, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_bind_int64(st, 1, m->id);
	sqlite3_bind_int64(st, 2, next);
	if (m->source) {
		sqlite3_bind_text(st, 3, m->source, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, m->folder, -1, SQLITE_STATIC);
	} else {
		sqlite3_bind_text(st, 3, u->sources_json, -1, SQLITE_STATIC);
	}
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		goto fail;
	int added = sqlite3_changes(srv->db);
	if (added > 0) {
		if (sqlite3_prepare_v2(srv->db, "UPDATE imap_mailboxes SET next_uid = ?2 WHERE id = ?1",
		    -1, &st, NULL) != SQLITE_OK)
			goto fail;
		sqlite3_bind_int64(st, 1, m->id);
		sqlite3_bind_int64(st, 2, next + added);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			goto fail;
	}
	if (sqlite3_exec(srv->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	return 0;
fail:
	sqlite3_exec(srv->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

int
mailbox_sync(struct server *srv, const struct serve_user *u, struct mailbox *m, uint32_t *added)
{
	int64_t changes = sqlite3_total_changes64(srv->db);
	sqlite3_stmt *st;
	uint32_t last = m->count ? m->uids[m->count - 1] : 0;

	*added = 0;
	if (changes == m->synced_changes)
		return 0;		/* nothing written since the last look */
	if (assign(srv, u, m) < 0)
		return -1;
	m->synced_changes = sqlite3_total_changes64(srv->db);
	if (sqlite3_prepare_v2(srv->db, "SELECT uid FROM imap_uids WHERE mailbox = ?1 AND uid > ?2 "
	    "ORDER BY uid", -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, m->id);
	sqlite3_bind_int64(st, 2, last);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (m->count == m->cap) {
			uint32_t c = m->cap ? m->cap * 2 : 256;
			uint32_t *nu = realloc(m->uids, c * sizeof(*nu));
			if (nu == NULL) {
				sqlite3_finalize(st);
				return -1;
			}
			m->uids = nu;
			m->cap = c;
		}
		m->uids[m->count++] = (uint32_t)sqlite3_column_int64(st, 0);
		(*added)++;
	}
	sqlite3_finalize(st);
	if (m->count)
		m->uidnext = m->uids[m->count - 1] + 1 > m->uidnext ? m->uids[m->count - 1] + 1 : m->uidnext;
	return 0;
}

uint32_t
mailbox_seq_of(const struct mailbox *m, uint32_t uid)
{
	uint32_t lo = 0, hi = m->count;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (m->uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < m->count && m->uids[lo] == uid ? lo + 1 : 0;
}

uint32_t
mailbox_unseen(struct server *srv, struct mailbox *m)
{
	sqlite3_stmt *st;
	uint32_t n = 0;

	if (sqlite3_prepare_v2(srv->db, "SELECT count(*) FROM imap_uids WHERE mailbox = ?1 AND "
	    "(flags IS NULL OR instr(flags, '\\Seen') = 0)", -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(st, 1, m->id);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = (uint32_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}
