/*
 * The index's compressed text (search/index_text.h): blobs made and read
 * back, damaged blobs refused, the index reading its text through
 * fts_view (snippets, a row taken out with its own tokens), and an archive
 * with FTS5's own copy migrated to it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "search/index_text.h"
#include "search/tokenize.h"
#include "store/db.h"

static char dir[] = "/tmp/ev-itext-XXXXXX";

static void
roundtrip(struct index_text_packer *p, const char *s, size_t n, int codec)
{
	unsigned char *b;
	size_t bl, tl;
	char *t;

	CHECK_INT(index_text_pack(p, s, n, &b, &bl), 0);
	if (n == 0) {
		CHECK(b == NULL);
		CHECK_INT(bl, 0);
	} else {
		CHECK(b != NULL);
		CHECK_INT(b[0], codec);
		if (codec == 'z')
			CHECK(bl < n / 2);
	}
	CHECK_INT(index_text_unpack(b, bl, &t, &tl), 0);
	CHECK_INT(tl, n);
	CHECK(memcmp(t, s, n) == 0);
	CHECK_INT(t[n], 0);
	free(t);
	free(b);
}

static void
test_blobs(void)
{
	struct index_text_packer *p = index_text_packer_new();
	char *big = malloc(100000), *noise = malloc(5000);
	uint32_t x = 12345;

	CHECK(p != NULL);
	for (int i = 0; i < 100000; i++)
		big[i] = "the quick brown fox jumps over the lazy dog "[i % 44];
	for (int i = 0; i < 5000; i++) {
		x = x * 1103515245u + 12345u;
		noise[i] = (char)(x >> 16);
	}
	roundtrip(p, "", 0, 0);
	roundtrip(p, "Re: lunch", 9, 'r');		/* short: raw */
	roundtrip(p, big, 100000, 'z');
	roundtrip(p, noise, 5000, 'r');			/* no smaller compressed */
	index_text_packer_free(p);
	free(big);
	free(noise);
}

static void
test_damaged_blobs(void)
{
	struct index_text_packer *p = index_text_packer_new();
	char text[4000];
	unsigned char *b, bad[64] = "zthis is no zstd frame at all";
	size_t bl, tl;
	char *t = (char *)1;

	memset(text, 'a', sizeof(text));
	CHECK_INT(index_text_pack(p, text, sizeof(text), &b, &bl), 0);
	CHECK_INT(b[0], 'z');
	/* cut short, a flipped byte, an unknown codec, a frame of nonsense */
	CHECK_INT(index_text_unpack(b, bl - 3, &t, &tl), -1);
	CHECK(t == NULL);
	b[bl - 1] ^= 0x55;
	CHECK_INT(index_text_unpack(b, bl, &t, &tl), -1);
	b[0] = 'x';
	CHECK_INT(index_text_unpack(b, bl, &t, &tl), -1);
	CHECK_INT(index_text_unpack(bad, strlen((char *)bad), &t, &tl), -1);
	free(b);
	index_text_packer_free(p);
}

static int
count(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int n = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
		return -2;
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* One row as the indexer writes it: its text in fts_text, then the index. */
static void
add_row(sqlite3 *db, struct index_text_packer *p, int64_t rowid, const char *subject,
    const char *body)
{
	const char *cols[7] = { subject, "alice@example.com", "", "", body, "", "" };
	sqlite3_stmt *text, *fts;
	unsigned char *b[7];
	size_t bl[7];

	CHECK_INT(sqlite3_prepare_v2(db, "INSERT INTO fts_text VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
	    "?7, ?8)", -1, &text, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_prepare_v2(db, "INSERT INTO fts(rowid, subject, sender, recipient, cc, "
	    "body, filename, attachment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", -1, &fts, NULL),
	    SQLITE_OK);
	sqlite3_bind_int64(text, 1, rowid);
	sqlite3_bind_int64(fts, 1, rowid);
	for (int i = 0; i < 7; i++) {
		CHECK_INT(index_text_pack(p, cols[i], strlen(cols[i]), &b[i], &bl[i]), 0);
		sqlite3_bind_blob(text, i + 2, b[i], (int)bl[i], SQLITE_STATIC);
		sqlite3_bind_text(fts, i + 2, cols[i], -1, SQLITE_STATIC);
	}
	CHECK_INT(sqlite3_step(text), SQLITE_DONE);
	CHECK_INT(sqlite3_step(fts), SQLITE_DONE);
	sqlite3_finalize(text);
	sqlite3_finalize(fts);
	for (int i = 0; i < 7; i++)
		free(b[i]);
}

static void
test_index_reads_its_text(void)
{
	struct index_text_packer *p = index_text_packer_new();
	char body[3000], *snip = NULL;
	sqlite3_stmt *st;
	sqlite3 *db;

	CHECK_INT(sqlite3_open(":memory:", &db), SQLITE_OK);
	/* what every connection to archive.db registers: ev_text() too */
	CHECK_INT(search_tokenizer_register(db), SQLITE_OK);
	CHECK_INT(sqlite3_exec(db, DB_FTS_TEXT_CREATE "; " DB_FTS_VIEW_CREATE "; " DB_FTS_CREATE,
	    NULL, NULL, NULL), SQLITE_OK);
	/* a body long enough to be compressed, with one word to find */
	memset(body, 0, sizeof(body));
	for (int i = 0; i < 60; i++)
		strcat(body, i == 30 ? "the zanzibar invoice is attached " :
		    "lorem ipsum dolor sit amet adipiscing ");
	add_row(db, p, 7, "Quarterly report", body);
	add_row(db, p, 8, "Lunch on Friday?", "see you at noon");
	CHECK_INT(count(db, "SELECT count(*) FROM fts WHERE fts MATCH 'zanzibar'"), 1);
	CHECK_INT(count(db, "SELECT rowid FROM fts WHERE fts MATCH 'lunch'"), 8);
	CHECK_INT(sqlite3_prepare_v2(db, "SELECT snippet(fts, -1, '[', ']', '...', 6) FROM fts "
	    "WHERE fts MATCH 'zanzibar'", -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		snip = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	CHECK(snip != NULL && strstr(snip, "[zanzibar]") != NULL);
	free(snip);
	/* the row goes from the index with the tokens it came with */
	CHECK_INT(sqlite3_exec(db, "DELETE FROM fts WHERE rowid = 7; DELETE FROM fts_text "
	    "WHERE id = 7", NULL, NULL, NULL), SQLITE_OK);
	CHECK_INT(count(db, "SELECT count(*) FROM fts WHERE fts MATCH 'zanzibar OR lorem'"), 0);
	CHECK_INT(count(db, "SELECT count(*) FROM fts_docsize"), 1);
	CHECK_INT(sqlite3_exec(db, "INSERT INTO fts(fts) VALUES ('integrity-check')", NULL, NULL,
	    NULL), SQLITE_OK);
	/* a damaged text is an error, not a wrong snippet, and is told apart
	 * from others (FTS5 keeps the function's message to itself) */
	CHECK_INT(index_text_damage_seen(), 0);
	CHECK_INT(sqlite3_exec(db, "UPDATE fts_text SET body = x'7a0102030405' WHERE id = 8", NULL,
	    NULL, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_prepare_v2(db, "SELECT snippet(fts, -1, '[', ']', '...', 6) FROM fts "
	    "WHERE fts MATCH 'lunch'", -1, &st, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_step(st), SQLITE_ERROR);
	CHECK_INT(index_text_damage_seen(), 1);
	CHECK_INT(index_text_damage_seen(), 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	index_text_packer_free(p);
}

/* An archive from before migration 7 (FTS5 kept its own copy, and the
 * index on (source, folder)) is moved to fts_text: its index made again. */
static void
test_old_index_migrates(void)
{
	char err[512] = "", path[4096];
	struct archive_db *adb;
	sqlite3 *db;

	adb = db_open(dir, 0, err, sizeof(err));
	CHECK(adb != NULL);
	db = db_handle(adb);
	/* back to version 6 as an older engine left it, with one indexed message */
	CHECK_INT(sqlite3_exec(db, "DROP TABLE fts; DROP VIEW fts_view; DROP TABLE fts_text; "
	    "CREATE VIRTUAL TABLE fts USING fts5(subject, sender, recipient, cc, body, filename, "
	    "attachment, tokenize = 'emailvault'); "
	    "CREATE INDEX locations_source_folder ON locations(source, folder); "
	    "INSERT INTO messages(hash, size, indexed) VALUES ('ab', 3, 1); "
	    "INSERT INTO fts(rowid, subject) VALUES (1, 'zanzibar'); "
	    "PRAGMA user_version = 6", NULL, NULL, NULL), SQLITE_OK);
	CHECK_INT(count(db, "SELECT count(*) FROM fts WHERE fts MATCH 'zanzibar'"), 1);
	db_close(adb);

	adb = db_open(dir, 0, err, sizeof(err));
	CHECK(adb != NULL);
	db = db_handle(adb);
	CHECK_INT(count(db, "PRAGMA user_version"), 7);
	CHECK_INT(count(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'fts' AND "
	    "sql LIKE '%content = ''fts_view''%'"), 1);
	CHECK_INT(count(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'fts_text'"), 1);
	CHECK_INT(count(db, "SELECT count(*) FROM sqlite_schema WHERE name = "
	    "'locations_source_folder'"), 0);
	CHECK_INT(count(db, "SELECT count(*) FROM fts_docsize"), 0);
	CHECK_INT(count(db, "SELECT indexed FROM messages WHERE hash = 'ab'"), 0);
	db_close(adb);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	CHECK_INT(system(path), 0);
}

int
main(void)
{
	if (mkdtemp(dir) == NULL)
		return 1;
	RUN(test_blobs);
	RUN(test_damaged_blobs);
	RUN(test_index_reads_its_text);
	RUN(test_old_index_migrates);
	DONE();
}
