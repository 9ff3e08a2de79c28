/*
 * The query language against an in-memory archive.db with the schema of
 * issue 9 (messages with attachments/sort_date, locations, fts with the
 * emailvault tokenizer): for each operator and combination, the exact set
 * (or order) of matching messages; malformed queries and their columns.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "check.h"
#include "search/query.h"
#include "search/tokenize.h"

static const char schema[] =
    "CREATE TABLE messages ("
    "  hash TEXT PRIMARY KEY, size INTEGER NOT NULL, subject TEXT, from_text TEXT,"
    "  to_text TEXT, cc_text TEXT, date_text TEXT, date_unix INTEGER, message_id TEXT,"
    "  from_addrs TEXT, to_addrs TEXT, first_seen REAL,"
    "  indexed INTEGER NOT NULL DEFAULT 0, attachments INTEGER, sort_date INTEGER,"
    "  index_note TEXT);"
    "CREATE TABLE locations ("
    "  source TEXT NOT NULL, folder TEXT NOT NULL, uidvalidity INTEGER NOT NULL,"
    "  uid INTEGER NOT NULL, hash TEXT NOT NULL REFERENCES messages(hash), flags TEXT,"
    "  internaldate INTEGER, archived_at REAL,"
    "  PRIMARY KEY (source, folder, uidvalidity, uid));"
    "CREATE INDEX locations_hash ON locations(hash);"
    "CREATE INDEX messages_sort_date ON messages(sort_date);"
    "CREATE VIRTUAL TABLE fts USING fts5(subject, sender, recipient, cc, body,"
    "  filename, attachment, tokenize = 'emailvault');";

struct msg {
	const char *hash, *subject, *from, *to, *cc, *body, *filename, *atext;
	int64_t size;
	int attachments;	/* -1: NULL (not known) */
	const char *date;	/* "YYYY-MM-DD[ HH:MM]" UTC or NULL */
	const char *locs;	/* "source:folder;source:folder" */
	int unindexed;		/* no fts row */
};

#define ALICE "Alice Example <alice@example.com>"
#define BOB "Bob Builder <bob@example.org>"
#define CAROL "Carol <carol@example.net>"

static const struct msg msgs[] = {
	{ "e01", "Invoice 1042 for October", ALICE, BOB, "",
	  "Please find the invoice attached. Regards, Alice", "invoice-1042.pdf",
	  "Invoice total 300 EUR", 50000, 1, "2024-03-05", "work:INBOX", 0 },
	{ "e02", "Q3 report", BOB, ALICE, CAROL,
	  "The q3 report is attached, draft version", "q3-report.xlsx", "",
	  2097152, 1, "2024-02-01", "work:INBOX", 0 },
	{ "e03", "Re: lunch", CAROL, ALICE, "",
	  "Lunch tomorrow? No invoice talk please", "", "", 3072, 0, "2023-12-24",
	  "home:INBOX", 0 },
	{ "e04", "Draft: invoice template", ALICE, ALICE, "",
	  "draft of the invoice template", "", "", 8000, 0, "2024-06-30 23:59",
	  "work:Drafts", 0 },
	{ "e05", "Meeting notes", "Dave <dave@example.com>", BOB, ALICE,
	  "notes of the weekly meeting", "", "", 4000, 0, "2024-07-01",
	  "work:Archive/2024;home:INBOX", 0 },
	{ "e06", "Grüße aus Zürich", "Jürgen Müller <juergen@example.de>", BOB, "",
	  "Die Straße in Zürich ist schön. Das Angebot für 20 Stück.", "", "", 6000, 0,
	  "2024-01-01", "home:INBOX", 0 },
	{ "e07", "Réunion de lundi", "Élodie Dubois <elodie@example.fr>", BOB, "",
	  "Le café est prêt, à bientôt", "", "", 10240, 0, "2023-11-11",
	  "home:INBOX", 0 },
	{ "e08", "Привет из Москвы", "Анна <anna@example.ru>", BOB, "",
	  "Мы отправили СЧЁТ на оплату", "", "", 5000, 0, "2024-05-05", "home:INBOX", 0 },
	{ "e09", "Καλημέρα", "Οδυσσέας <odysseas@example.gr>", BOB, "",
	  "ΤΙΜΟΛΌΓΙΟ για την παραγγελία σας", "", "", 5000, 0, "2024-05-06",
	  "home:INBOX", 0 },
	{ "e10", "会议通知", "王伟 <wang@example.cn>", BOB, "",
	  "我们在北京开会，请确认时间。", "", "", 5000, 0, "2024-05-07", "home:INBOX", 0 },
	{ "e11", "京剧", "王伟 <wang@example.cn>", BOB, "",
	  "北方的京剧很有名", "", "", 5000, 0, "2024-05-08", "home:INBOX", 0 },
	{ "e12", "会議のお知らせ", "山田 <yamada@example.jp>", BOB, "",
	  "東京タワーで打ち合わせをします。ｶﾞｽ代の請求書", "", "", 5000, 0, "2024-05-09",
	  "home:INBOX", 0 },
	{ "e13", "料金", "山田 <yamada@example.jp>", BOB, "",
	  "\xe3\x82\xab\xe3\x82\x99\xe3\x82\xb9料金のお知らせ", "", "", 5000, 0,
	  "2024-05-10", "home:INBOX", 0 },
	{ "e14", "회의 안내", "김민준 <kim@example.kr>", BOB, "",
	  "다음 주 월요일에 회의가 있습니다", "", "", 5000, 0, "2024-05-11",
	  "home:INBOX", 0 },
	{ "e15", "İstanbul toplantısı", "Ayşe <ayse@example.tr>", BOB, "",
	  "ILIK hava", "", "", 5000, 0, "2024-05-12", "home:INBOX", 0 },
	{ "e16", "Undated note", CAROL, BOB, "", "an invoice without a date", "", "",
	  5000, -1, NULL, "home:Notes", 0 },
	{ "e17", "Not indexed yet", ALICE, BOB, "", "", "", "", 10485760, -1, "2024-08-01",
	  "work:INBOX", 1 },
	/* the DESIGN.md example and its near misses */
	{ "e18", "Q3 report and invoice", ALICE, BOB, "", "here is the invoice",
	  "q3.pdf", "", 40000, 1, "2024-03-01", "work:INBOX", 0 },
	{ "e19", "Q3 report and invoice", ALICE, BOB, "", "here is the invoice",
	  "q3.pdf", "", 40000, 1, "2024-03-01", "home:INBOX;work:Archive", 0 },
	{ "e20", "Q3 report and invoice", ALICE, BOB, "", "the invoice draft",
	  "q3.pdf", "", 40000, 1, "2024-03-01", "work:INBOX", 0 },
	{ "e21", "Q3 report and invoice", ALICE, BOB, "", "here is the invoice",
	  "", "", 40000, 0, "2024-03-01", "work:INBOX", 0 },
	{ "e22", "Q3 report and invoice", ALICE, BOB, "", "here is the invoice",
	  "q3.pdf", "", 40000, 1, "2024-07-01", "work:INBOX", 0 },
	/* ranking */
	{ "r1", "zebra crossing", CAROL, BOB, "", "nothing else here", "", "", 1000, 0,
	  "2020-01-01", "home:Zoo", 0 },
	{ "r2", "a walk", CAROL, BOB, "",
	  "we walked a long way and on that long way we saw a zebra at last, far away",
	  "", "", 1000, 0, "2021-01-01", "home:Zoo", 0 },
	{ "t1", "quokka", CAROL, BOB, "", "same text", "", "", 1000, 0, "2020-06-01",
	  "home:Zoo", 0 },
	{ "t2", "quokka", CAROL, BOB, "", "same text", "", "", 1000, 0, "2022-06-01",
	  "home:Zoo", 0 },
};
#define NMSGS (int)(sizeof msgs / sizeof msgs[0])

static sqlite3 *db;

static int64_t
date_of(const char *d)
{
	struct tm tm;
	int h = 0, mi = 0;

	memset(&tm, 0, sizeof tm);
	sscanf(d, "%d-%d-%d %d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &h, &mi);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	tm.tm_hour = h;
	tm.tm_min = mi;
	return (int64_t)timegm(&tm);
}

static void
exec(const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", sql, err);
		exit(1);
	}
}

static void
fill(void)
{
	sqlite3_stmt *m, *f, *l;
	int i, uid = 1;

	CHECK_INT(sqlite3_open(":memory:", &db), SQLITE_OK);
	CHECK_INT(search_tokenizer_register(db), SQLITE_OK);
	exec(schema);
	CHECK_INT(sqlite3_prepare_v2(db, "INSERT INTO messages(hash, size, subject, from_text,"
	    " to_text, cc_text, indexed, attachments, sort_date) VALUES (?1, ?2, ?3, ?4, ?5,"
	    " ?6, ?7, ?8, ?9)", -1, &m, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_prepare_v2(db, "INSERT INTO fts(rowid, subject, sender, recipient, cc,"
	    " body, filename, attachment) VALUES (last_insert_rowid(), ?1, ?2, ?3, ?4, ?5,"
	    " ?6, ?7)", -1, &f, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_prepare_v2(db, "INSERT INTO locations(source, folder, uidvalidity,"
	    " uid, hash) VALUES (?1, ?2, 1, ?3, ?4)", -1, &l, NULL), SQLITE_OK);
	for (i = 0; i < NMSGS; i++) {
		const struct msg *x = &msgs[i];
		char locs[128], *save = NULL, *loc;

		sqlite3_bind_text(m, 1, x->hash, -1, SQLITE_STATIC);
		sqlite3_bind_int64(m, 2, x->size);
		sqlite3_bind_text(m, 3, x->subject, -1, SQLITE_STATIC);
		sqlite3_bind_text(m, 4, x->from, -1, SQLITE_STATIC);
		sqlite3_bind_text(m, 5, x->to, -1, SQLITE_STATIC);
		sqlite3_bind_text(m, 6, x->cc, -1, SQLITE_STATIC);
		sqlite3_bind_int(m, 7, !x->unindexed);
		if (x->attachments < 0)
			sqlite3_bind_null(m, 8);
		else
			sqlite3_bind_int(m, 8, x->attachments);
		if (x->date)
			sqlite3_bind_int64(m, 9, date_of(x->date));
		else
			sqlite3_bind_null(m, 9);
		CHECK_INT(sqlite3_step(m), SQLITE_DONE);
		sqlite3_reset(m);
		if (!x->unindexed) {
			sqlite3_bind_text(f, 1, x->subject, -1, SQLITE_STATIC);
			sqlite3_bind_text(f, 2, x->from, -1, SQLITE_STATIC);
			sqlite3_bind_text(f, 3, x->to, -1, SQLITE_STATIC);
			sqlite3_bind_text(f, 4, x->cc, -1, SQLITE_STATIC);
			sqlite3_bind_text(f, 5, x->body, -1, SQLITE_STATIC);
			sqlite3_bind_text(f, 6, x->filename, -1, SQLITE_STATIC);
			sqlite3_bind_text(f, 7, x->atext, -1, SQLITE_STATIC);
			CHECK_INT(sqlite3_step(f), SQLITE_DONE);
			sqlite3_reset(f);
		}
		snprintf(locs, sizeof locs, "%s", x->locs);
		for (loc = strtok_r(locs, ";", &save); loc; loc = strtok_r(NULL, ";", &save)) {
			char *colon = strchr(loc, ':');

			*colon = '\0';
			sqlite3_bind_text(l, 1, loc, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(l, 2, colon + 1, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(l, 3, uid++);
			sqlite3_bind_text(l, 4, x->hash, -1, SQLITE_STATIC);
			CHECK_INT(sqlite3_step(l), SQLITE_DONE);
			sqlite3_reset(l);
		}
	}
	sqlite3_finalize(m);
	sqlite3_finalize(f);
	sqlite3_finalize(l);
}

/*
 * Column COLUMN of the rows Q finds with OPTS, in result order, joined
 * with SEP; "ERROR: ..." when Q does not parse.
 */
static const char *
run_opts(const char *q, const struct search_opts *opts, int column, const char *sep)
{
	static char out[4096];
	struct search_query *sq;
	struct search_sql s;
	sqlite3_stmt *st;
	char err[256];
	size_t len = 0;
	int col, rc;

	out[0] = '\0';
	if (search_query_parse(q, strlen(q), &sq, err, sizeof err, &col) != 0) {
		snprintf(out, sizeof out, "ERROR: %s", err);
		return out;
	}
	if (search_query_sql(sq, opts, &s, err, sizeof err) != 0) {
		search_query_free(sq);
		snprintf(out, sizeof out, "SQL ERROR: %s", err);
		return out;
	}
	search_query_free(sq);
	if (sqlite3_prepare_v2(db, s.sql, -1, &st, NULL) != SQLITE_OK) {
		snprintf(out, sizeof out, "PREPARE: %s: %s", sqlite3_errmsg(db), s.sql);
		search_sql_free(&s);
		return out;
	}
	CHECK_INT(search_sql_bind(st, &s), SQLITE_OK);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(st, column);

		len += (size_t)snprintf(out + len, sizeof out - len, "%s%s", len ? sep : "",
		    v ? v : "NULL");
	}
	if (rc != SQLITE_DONE)
		snprintf(out, sizeof out, "STEP: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	search_sql_free(&s);
	return out;
}

/* The hashes Q finds, in result order, space-separated. */
static const char *
run(const char *q)
{
	struct search_opts o = { "snippet(fts, -1, '[', ']', '...', 8)", 0, 0 };

	return run_opts(q, &o, 1, " ");
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* run(), sorted: for checks of the set, not the order. */
static const char *
set(const char *q)
{
	static char out[4096];
	char buf[4096], *w[256], *save = NULL, *t;
	size_t len = 0;
	int n = 0, i;

	snprintf(buf, sizeof buf, "%s", run(q));
	if (strncmp(buf, "ERROR", 5) == 0 || strncmp(buf, "PREPARE", 7) == 0 ||
	    strncmp(buf, "STEP", 4) == 0) {
		snprintf(out, sizeof out, "%s", buf);
		return out;
	}
	for (t = strtok_r(buf, " ", &save); t && n < 256; t = strtok_r(NULL, " ", &save))
		w[n++] = t;
	qsort(w, (size_t)n, sizeof *w, cmp_str);
	out[0] = '\0';
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(out + len, sizeof out - len, "%s%s", i ? " " : "", w[i]);
	return out;
}

/* Every message but those in EXCEPT (sorted, space-separated). */
static const char *
all_but(const char *except)
{
	static char out[4096];
	size_t len = 0;
	char key[8];
	const char *names[NMSGS];
	int i, n = 0;

	for (i = 0; i < NMSGS; i++) {
		snprintf(key, sizeof key, "%s", msgs[i].hash);
		if (!strstr(except, key))
			names[n++] = msgs[i].hash;
	}
	qsort(names, (size_t)n, sizeof *names, cmp_str);
	out[0] = '\0';
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(out + len, sizeof out - len, "%s%s", i ? " " : "", names[i]);
	return out;
}

static void
test_words(void)
{
	CHECK_STR(set("invoice"), "e01 e03 e04 e16 e18 e19 e20 e21 e22");
	CHECK_STR(set("INVOICE attached"), "e01");
	CHECK_STR(set("invoice lunch"), "e03");
	CHECK_STR(set("nosuchword"), "");
	/* attachment text and file names are searched too */
	CHECK_STR(set("total"), "e01");
	CHECK_STR(set("xlsx"), "e02");
}

static void
test_scripts(void)
{
	CHECK_STR(set("zurich"), "e06");
	CHECK_STR(set("ZÜRICH"), "e06");
	CHECK_STR(set("strasse"), "e06");
	CHECK_STR(set("grüsse"), "e06");
	CHECK_STR(set("cafe"), "e07");
	CHECK_STR(set("reunion"), "e07");
	CHECK_STR(set("Réunion"), "e07");
	/* Cyrillic: case and ё */
	CHECK_STR(set("счёт"), "e08");
	CHECK_STR(set("счет"), "e08");
	CHECK_STR(set("ПРИВЕТ"), "e08");
	CHECK_STR(set("москвы"), "e08");
	/* Greek: case, tonos, final sigma */
	CHECK_STR(set("τιμολόγιο"), "e09");
	CHECK_STR(set("ΤΙΜΟΛΟΓΙΟ"), "e09");
	CHECK_STR(set("οδυσσεας"), "e09");
	CHECK_STR(set("καλημερα"), "e09");
	/* Chinese: a 2-character word, not its characters apart */
	CHECK_STR(set("北京"), "e10");
	CHECK_STR(set("京剧"), "e11");
	CHECK_STR(set("会议"), "e10");
	CHECK_STR(set("北京开会"), "e10");
	CHECK_STR(set("京北"), "");
	/* one character: wherever it stands in a run (東京 has it too) */
	CHECK_STR(set("京"), "e10 e11 e12");
	CHECK_STR(set("名"), "e11");
	/* Japanese: kanji+katakana, half-width and NFD kana */
	CHECK_STR(set("東京"), "e12");
	CHECK_STR(set("タワー"), "e12");
	CHECK_STR(set("打ち合わせ"), "e12");
	CHECK_STR(set("ガス"), "e12 e13");
	CHECK_STR(set("ｶﾞｽ"), "e12 e13");
	CHECK_STR(set("お知らせ"), "e12 e13");
	/* Korean */
	CHECK_STR(set("회의"), "e14");
	CHECK_STR(set("월요일"), "e14");
	/* Turkish */
	CHECK_STR(set("istanbul"), "e15");
	CHECK_STR(set("ılık"), "e15");
}

static void
test_phrases_prefix(void)
{
	CHECK_STR(set("\"q3 report\""), "e02 e18 e19 e20 e21 e22");
	CHECK_STR(set("\"report q3\""), "");
	CHECK_STR(set("\"invoice template\""), "e04");
	CHECK_STR(set("\"template invoice\""), "");
	CHECK_STR(set("invo*"), "e01 e03 e04 e16 e18 e19 e20 e21 e22");
	CHECK_STR(set("zür*"), "e06");
	CHECK_STR(set("ZUR*"), "e06");
	CHECK_STR(set("\"invoice temp\"*"), "e04");
	CHECK_STR(set("мос*"), "e08");
	/* a word of several tokens is a phrase */
	CHECK_STR(set("q3-report"), "e02 e18 e19 e20 e21 e22");
	CHECK_STR(set("invoice-1042"), "e01");
}

static void
test_negation(void)
{
	CHECK_STR(set("invoice -draft"), "e01 e03 e16 e18 e19 e21 e22");
	CHECK_STR(set("invoice -\"invoice template\""), "e01 e03 e16 e18 e19 e20 e21 e22");
	CHECK_STR(set("invoice NOT draft"), "e01 e03 e16 e18 e19 e21 e22");
	/* only negations: everything else, unindexed messages included */
	CHECK_STR(set("-invoice"), all_but("e01 e03 e04 e16 e18 e19 e20 e21 e22"));
	CHECK_STR(set("-from:alice"), all_but("e01 e04 e18 e19 e20 e21 e22"));
	CHECK_STR(set("-invoice -zebra -quokka"),
	    all_but("e01 e03 e04 e16 e18 e19 e20 e21 e22 r1 r2 t1 t2"));
	CHECK_STR(set("--zurich"), "e06");
	/* negated groups (De Morgan) */
	CHECK_STR(set("invoice -(draft OR lunch)"), "e01 e16 e18 e19 e21 e22");
	CHECK_STR(set("invoice -(draft template)"), "e01 e03 e16 e18 e19 e20 e21 e22");
	CHECK_STR(set("-(invoice OR zebra OR quokka)"),
	    all_but("e01 e03 e04 e16 e18 e19 e20 e21 e22 r1 r2 t1 t2"));
	/* negated non-text operators; NULL columns count as not matching */
	CHECK_STR(set("invoice -has:attachment"), "e03 e04 e16 e21");
	CHECK_STR(set("-after:2024-01-01 invoice"), "e03 e16");
	CHECK_STR(set("-larger:5k -folder:INBOX"), "e16 r1 r2 t1 t2");
	CHECK_STR(set("-source:home -invoice"), "e02 e17");
}

static void
test_or(void)
{
	CHECK_STR(set("zurich OR cafe"), "e06 e07");
	CHECK_STR(set("zurich OR cafe OR 北京"), "e06 e07 e10");
	/* OR binds tighter than the implicit AND */
	CHECK_STR(set("invoice draft OR lunch"), "e03 e04 e20");
	CHECK_STR(set("(invoice draft) OR lunch"), "e03 e04 e20");
	CHECK_STR(set("invoice (template OR lunch)"), "e03 e04");
	CHECK_STR(set("invoice AND lunch"), "e03");
	/* mixed with SQL operators and negations */
	CHECK_STR(set("from:carol OR larger:1M"), "e02 e03 e16 e17 r1 r2 t1 t2");
	CHECK_STR(set("zurich OR -source:home"), "e01 e02 e04 e06 e17 e18 e20 e21 e22");
	CHECK_STR(set("zurich OR -invoice"), all_but("e01 e03 e04 e16 e18 e19 e20 e21 e22"));
	CHECK_STR(set("(zurich OR cafe) -schön"), "e07");
	CHECK_STR(set("(zurich OR folder:Drafts) (grüße OR template)"), "e04 e06");
	CHECK_STR(set("has:attachment OR smaller:4k"), "e01 e02 e03 e05 e18 e19 e20 e22 r1 r2 t1 t2");
}

static void
test_fields(void)
{
	CHECK_STR(set("from:alice"), "e01 e04 e18 e19 e20 e21 e22");
	CHECK_STR(set("from:alice@example.com"), "e01 e04 e18 e19 e20 e21 e22");
	CHECK_STR(set("from:\"Alice Example\""), "e01 e04 e18 e19 e20 e21 e22");
	CHECK_STR(set("from:juergen@example.de"), "e06");
	CHECK_STR(set("from:müller"), "e06");
	CHECK_STR(set("from:Οδυσσέας"), "e09");
	CHECK_STR(set("from:ali*"), "e01 e04 e18 e19 e20 e21 e22");
	CHECK_STR(set("to:alice"), "e02 e03 e04");
	CHECK_STR(set("cc:alice"), "e05");
	CHECK_STR(set("cc:carol"), "e02");
	CHECK_STR(set("subject:invoice"), "e01 e04 e18 e19 e20 e21 e22");
	CHECK_STR(set("subject:\"q3 report\" -subject:invoice"), "e02");
	CHECK_STR(set("filename:pdf"), "e01 e18 e19 e20 e22");
	CHECK_STR(set("filename:invoice"), "e01");
	CHECK_STR(set("filename:report"), "e02");
	CHECK_STR(set("SUBJECT:zurich"), "e06");
	CHECK_STR(set("subject:会议"), "e10");
}

static void
test_locations(void)
{
	CHECK_STR(set("folder:Drafts"), "e04");
	CHECK_STR(set("folder:drafts"), "");	/* exact, except INBOX */
	CHECK_STR(set("folder:inbox invoice"), "e01 e03 e18 e19 e20 e21 e22");
	CHECK_STR(set("folder:Archive*"), "e05 e19");
	CHECK_STR(set("folder:Archive/*"), "e05");
	CHECK_STR(set("folder:\"Archive/2024\""), "e05");
	CHECK_STR(set("source:work"), "e01 e02 e04 e05 e17 e18 e19 e20 e21 e22");
	/* together: that folder of that source (e05 is in work:Archive and
	 * home:INBOX, e19 in home:INBOX and work:Archive) */
	CHECK_STR(set("folder:INBOX source:work"), "e01 e02 e17 e18 e20 e21 e22");
	CHECK_STR(set("folder:INBOX -source:work"), "e03 e06 e07 e08 e09 e10 e11 e12 "
	    "e13 e14 e15");
	CHECK_STR(set("folder:Zoo OR folder:Notes"), "e16 r1 r2 t1 t2");
	CHECK_STR(set("source:nosuch"), "");
	/* user text is never SQL */
	CHECK_STR(set("folder:\"x' OR 1=1 --\""), "");
	CHECK_STR(set("source:\"work' OR '1'='1\""), "");
}

static void
test_sizes_dates(void)
{
	CHECK_STR(set("has:attachment"), "e01 e02 e18 e19 e20 e22");
	CHECK_STR(set("HAS:Attachments"), "e01 e02 e18 e19 e20 e22");
	CHECK_STR(set("larger:1M"), "e02 e17");
	CHECK_STR(set("larger:2M"), "e17");	/* 2097152 is not larger than 2M */
	CHECK_STR(set("larger:10MB"), "");
	CHECK_STR(set("larger:41000 smaller:60000"), "e01");
	CHECK_STR(set("smaller:4k"), "e03 e05 r1 r2 t1 t2");
	CHECK_STR(set("larger:10k smaller:20k"), "");	/* e07 is exactly 10240 */
	CHECK_STR(set("larger:10239 smaller:10241"), "e07");
	/* after: includes its day, before: excludes it */
	CHECK_STR(set("after:2024-07-01"), "e05 e17 e22");
	CHECK_STR(set("before:2024-07-01 after:2024-06-30"), "e04");
	CHECK_STR(set("after:2024-01-01 before:2024-01-02"), "e06");
	CHECK_STR(set("before:2024/1/1 -zebra -quokka"), "e03 e07");
	CHECK_STR(set("after:2024-02-29 before:2024-03-02 -has:attachment"), "e21");
	CHECK_STR(set("-before:2030-01-01"), "e16");	/* no date */
}

static void
test_design_example(void)
{
	CHECK_STR(set("from:alice to:bob subject:\"q3 report\" after:2024-01-01 "
	    "before:2024-07-01 has:attachment folder:INBOX source:work invoice -draft"),
	    "e18");
	CHECK_STR(set("from:alice has:attachment after:2024-01-01 invoice"),
	    "e01 e18 e19 e20 e22");
}

static void
test_ranking(void)
{
	/* a subject hit outranks one in a long body, even though newer */
	CHECK_STR(run("zebra"), "r1 r2");
	/* equal rank: newest first */
	CHECK_STR(run("quokka"), "t2 t1");
	/* ranked by the positive text, then the rest by date */
	CHECK_STR(run("zebra OR folder:Zoo"), "r1 r2 t2 t1");
	CHECK_STR(run("quokka OR zebra"), "t2 t1 r1 r2");	/* shorter rows first */
	/* no text: newest first, undated last */
	CHECK_STR(run("folder:Zoo OR folder:Notes"), "t2 r2 t1 r1 e16");
	/* empty query: every message, by date */
	/* (same date: higher rowid first) */
	CHECK_STR(run(""), "e17 e22 e05 e04 e15 e14 e13 e12 e11 e10 e09 e08 e01 e21 e20 "
	    "e19 e18 e02 e06 e03 e07 t2 r2 t1 r1 e16");
	CHECK_STR(run("   "), run(""));
}

static void
test_sql_shape(void)
{
	struct search_query *q;
	struct search_sql s;
	char err[128];

	/* one MATCH, joined, when the top level has positive text */
	CHECK_INT(search_query_parse("xyzzy from:alice has:attachment", 31, &q, err,
	    sizeof err, NULL), 0);
	CHECK_INT(search_query_sql(q, NULL, &s, err, sizeof err), 0);
	CHECK(strncmp(s.sql, "SELECT m.rowid AS rowid, m.hash AS hash, bm25(", 46) == 0);
	CHECK(strstr(s.sql, "FROM fts JOIN messages m") != NULL);
	CHECK(strstr(s.sql, "xyzzy") == NULL);
	CHECK(strstr(s.sql, "alice") == NULL);
	CHECK_INT(s.ranked, 1);
	CHECK_INT(s.nparams, 1);
	CHECK_STR(s.params[0].text, "\"xyzzy\" AND sender : (\"alice\")");
	search_sql_free(&s);
	search_query_free(q);
	/* no text: no fts at all */
	CHECK_INT(search_query_parse("larger:5M", 9, &q, err, sizeof err, NULL), 0);
	{
		struct search_opts o = { "snippet(fts, 0, '', '', '', 1)", 0, 0 };

		CHECK_INT(search_query_sql(q, &o, &s, err, sizeof err), 0);
	}
	CHECK(strstr(s.sql, "fts") == NULL);
	CHECK_INT(s.ranked, 0);
	CHECK_INT(s.params[0].type, SEARCH_PARAM_INT);
	CHECK_INT(s.params[0].num, 5 * 1024 * 1024);
	search_sql_free(&s);
	search_query_free(q);
	/* a lone CJK character becomes a prefix; quotes inside tokens cannot
	 * occur, but the FTS5 string quoting is there */
	CHECK_INT(search_query_parse("subject:京 x東y", strlen("subject:京 x東y"), &q, err, sizeof err, NULL), 0);
	CHECK_INT(search_query_sql(q, NULL, &s, err, sizeof err), 0);
	CHECK_STR(s.params[0].text, "subject : (\"京\"*) AND \"x\" + \"東\"* + \"y\"");
	search_sql_free(&s);
	search_query_free(q);
}

/* snippets for the rows returned, from the MATCH that ranked them */
static void
test_snippets(void)
{
	struct search_opts o = { "snippet(fts, -1, '[', ']', '...', 6)", 0, 0 };

	CHECK_STR(run_opts("zurich", &o, 4, "|"), "Die Straße in [Zürich] ist schön...");
	CHECK_STR(run_opts("北京", &o, 4, "|"), "我们在[北京]开会...");
	CHECK_STR(run_opts("from:müller", &o, 4, "|"), "Jürgen [Müller] <juergen@example.de>");
	/* the mixed form: snippet where the positive text matched */
	CHECK_STR(run_opts("cafe OR folder:Notes", &o, 4, "|"),
	    "Le [café] est prêt, à bientôt|NULL");
	/* no text: no snippet */
	CHECK_STR(run_opts("folder:Drafts", &o, 4, "|"), "NULL");
	/* sort_date comes out as the fourth column */
	CHECK_STR(run_opts("zurich", &o, 3, "|"), "1704067200");
	/* rank: NULL without text, a bm25 value (negative) with it */
	CHECK_STR(run_opts("folder:Drafts", &o, 2, "|"), "NULL");
	CHECK(run_opts("zurich", &o, 2, "|")[0] == '-');
	/* without a snippet, four columns */
	CHECK_STR(run_opts("zurich", NULL, 0, "|"), "6");
}

/* The plan of Q as run with a page of 20 (EXPLAIN QUERY PLAN details, "|"). */
static const char *
plan(const char *q)
{
	static char out[4096];
	struct search_opts o = { "snippet(fts, -1, '[', ']', '...', 8)", 20, 0 };
	struct search_query *sq;
	struct search_sql s;
	sqlite3_stmt *st;
	char err[256], *sql;
	size_t len = 0;

	out[0] = '\0';
	CHECK_INT(search_query_parse(q, strlen(q), &sq, err, sizeof err, NULL), 0);
	CHECK_INT(search_query_sql(sq, &o, &s, err, sizeof err), 0);
	search_query_free(sq);
	sql = malloc(strlen(s.sql) + 32);
	sprintf(sql, "EXPLAIN QUERY PLAN %s", s.sql);
	CHECK_INT(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	CHECK_INT(search_sql_bind(st, &s), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW)
		len += (size_t)snprintf(out + len, sizeof out - len, "%s|",
		    (const char *)sqlite3_column_text(st, 3));
	sqlite3_finalize(st);
	search_sql_free(&s);
	free(sql);
	return out;
}

/*
 * The plans that keep a search fast in a big archive: a page of text-only
 * hits looks up in messages only the rows that can be on it, and locations
 * are looked up by the message's hash (a source or folder holds most of
 * them: reading all of its locations for each message was quadratic).
 */
static void
test_plans(void)
{
	const char *p = plan("invoice");

	CHECK(strstr(p, "MATERIALIZE hit") != NULL);
	CHECK(strstr(p, "SCAN fts") != NULL);
	p = plan("folder:INBOX source:work -invoice");
	CHECK(strstr(p, "SEARCH l USING INDEX locations_hash (hash=?)") != NULL);
	CHECK(strstr(p, "(source=?") == NULL);	/* not all of a source's locations */
	p = plan("zebra -folder:Zoo");
	CHECK(strstr(p, "SEARCH l USING INDEX locations_hash (hash=?)") != NULL);
	CHECK(strstr(p, "(source=?") == NULL);
}

/* LIMIT/OFFSET pages through the same order, in every form of the SQL */
static void
test_paging(void)
{
	static const char *const queries[] = {
		"invoice", "from:alice has:attachment", "zebra OR folder:Zoo", "-zebra", "",
		"\"q3 report\" -draft",
	};
	struct search_opts all = { NULL, 0, 0 };
	char full[4096], paged[4096];
	size_t i;
	int off;

	for (i = 0; i < sizeof queries / sizeof *queries; i++) {
		snprintf(full, sizeof full, "%s", run_opts(queries[i], &all, 1, " "));
		paged[0] = '\0';
		for (off = 0; off < NMSGS + 3; off += 3) {
			struct search_opts o = { i % 2 ? "snippet(fts, -1, '', '', '', 4)" : NULL,
			    3, off };
			const char *p = run_opts(queries[i], &o, 1, " ");

			if (*p && *paged)
				strcat(paged, " ");
			strcat(paged, p);
		}
		CHECK_STR(paged, full);
	}
	/* equal rank (the same text) across a page boundary: the newer first */
	for (off = 0; off < 3; off++) {
		struct search_opts o = { "snippet(fts, -1, '', '', '', 4)", 1, off };

		CHECK_STR(run_opts("quokka", &o, 1, " "), off == 0 ? "t2" : off == 1 ? "t1" : "");
	}
	{
		struct search_opts o = { NULL, 0, NMSGS - 4 };	/* offset alone */

		CHECK_STR(run_opts("", &o, 1, " "), "r2 t1 r1 e16");
	}
}

struct bad {
	const char *q, *msg;
	int col;
};

static void
test_errors(void)
{
	static const struct bad bad[] = {
		{ "a )", "unexpected ')' at column 3", 3 },
		{ "from:alice (a OR b))", "unexpected ')' at column 20", 20 },
		{ "(a OR b", "unclosed '(' at column 1", 1 },
		{ "x ()", "empty parentheses at column 3", 3 },
		{ "ab \"q3 report", "unclosed quote at column 4", 4 },
		{ "subject:\"q3", "unclosed quote at column 9", 9 },
		{ "form:alice", "unknown operator 'form:' at column 1 (did you mean from:?)", 1 },
		{ "invoice subjcet:x", "unknown operator 'subjcet:' at column 9 "
		  "(did you mean subject:?)", 9 },
		{ "in:INBOX", "unknown operator 'in:' at column 1 (did you mean folder:?)", 1 },
		{ "re:hello", "unknown operator 're:' at column 1 (put \"re:...\" in quotes "
		  "to search for the text)", 1 },
		{ "Zürich zz:x", "unknown operator 'zz:' at column 8 (put \"zz:...\" in quotes "
		  "to search for the text)", 8 },
		{ "after:2024-13-01", "after: wants a date YYYY-MM-DD at column 7", 7 },
		{ "after:2023-02-29", "after: wants a date YYYY-MM-DD at column 7", 7 },
		{ "before:yesterday", "before: wants a date YYYY-MM-DD at column 8", 8 },
		{ "before:2024-01-01x", "before: wants a date YYYY-MM-DD at column 8", 8 },
		{ "larger:5X", "larger: wants a size such as 300, 10k, 5M or 1G at column 8", 8 },
		{ "smaller:", "smaller: wants a value at column 9", 9 },
		{ "larger:99999999999999999999", "larger: size too large at column 8", 8 },
		{ "larger:9999999999999G", "larger: size too large at column 8", 8 },
		{ "larger:5M*", "larger: takes no '*' at column 10", 10 },
		{ "has:pdf", "has: knows only has:attachment at column 5", 5 },
		{ "from:", "from: wants a value at column 6", 6 },
		{ "from:(a OR b)", "from: takes a word or a \"phrase\", not parentheses at column 6", 6 },
		{ "from:\"\"", "from: wants letters or digits at column 7", 7 },
		{ "folder:\"\"", "folder: wants a folder name at column 9", 9 },
		{ "source:a*", "source: takes no '*' at column 9", 9 },
		{ "a OR", "OR needs a term after it at column 3", 3 },
		{ "OR a", "OR needs a term before it at column 1", 1 },
		{ "a OR OR b", "OR needs a term after it at column 3", 3 },
		{ "(OR a)", "OR needs a term before it at column 2", 2 },
		{ "AND a", "AND needs a term before it at column 1", 1 },
		{ "a AND", "AND needs a term after it at column 3", 3 },
		{ "- a", "'-' needs a term right after it at column 1", 1 },
		{ "a -", "'-' needs a term right after it at column 3", 3 },
		{ "NOT", "'NOT' needs a term right after it at column 1", 1 },
		{ "a NOT OR b", "'NOT' needs a term right after it at column 3", 3 },
		{ "-OR b", "'-' needs a term right after it at column 1", 1 },
		{ "!!!", "'!!!' has no letters or digits to search for at column 1", 1 },
		{ "ok \"...\"", "'...' has no letters or digits to search for at column 5", 5 },
		{ "in*voice", "'*' goes only at the end of a word at column 3", 3 },
		{ "*", "'*' goes only at the end of a word at column 1", 1 },
		{ "ab \xff", "invalid UTF-8 at column 4", 4 },
		{ "日本 form:x", "unknown operator 'form:' at column 4 (did you mean from:?)", 4 },
	};
	struct search_query *q;
	char err[256];
	size_t i;
	int col;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		q = (struct search_query *)1;
		col = -1;
		CHECK_INT(search_query_parse(bad[i].q, strlen(bad[i].q), &q, err, sizeof err,
		    &col), -1);
		CHECK(q == NULL);
		CHECK_STR(err, bad[i].msg);
		CHECK_INT(col, bad[i].col);
	}
}

static void
test_limits(void)
{
	char *big = malloc(SEARCH_QUERY_MAX_BYTES + 2);
	struct search_query *q;
	char err[256];
	int col, i, n = 0;

	memset(big, 'a', SEARCH_QUERY_MAX_BYTES + 1);
	big[SEARCH_QUERY_MAX_BYTES + 1] = '\0';
	CHECK_INT(search_query_parse(big, SEARCH_QUERY_MAX_BYTES + 1, &q, err, sizeof err,
	    &col), -1);
	CHECK(strncmp(err, "query too long", 14) == 0);
	/* too many terms */
	for (i = 0; i < SEARCH_QUERY_MAX_TERMS + 1; i++)
		n += snprintf(big + n, 8, "w%d ", i % 1000);
	CHECK_INT(search_query_parse(big, (size_t)n, &q, err, sizeof err, &col), -1);
	CHECK(strncmp(err, "too many terms", 14) == 0);
	/* too deep */
	n = 0;
	for (i = 0; i < SEARCH_QUERY_MAX_DEPTH + 1; i++)
		big[n++] = '(';
	big[n++] = 'a';
	for (i = 0; i < SEARCH_QUERY_MAX_DEPTH + 1; i++)
		big[n++] = ')';
	CHECK_INT(search_query_parse(big, (size_t)n, &q, err, sizeof err, &col), -1);
	CHECK(strncmp(err, "too deeply nested", 17) == 0);
	/* at the limits it works */
	CHECK_STR(set("((((((((((((((((((((zurich))))))))))))))))))))"), "e06");
	CHECK_STR(set("-(-(-(-(-(-(-(-(-(-zurich)))))))))"), "e06");
	free(big);
}

int
main(void)
{
	fill();
	RUN(test_words);
	RUN(test_scripts);
	RUN(test_phrases_prefix);
	RUN(test_negation);
	RUN(test_or);
	RUN(test_fields);
	RUN(test_locations);
	RUN(test_sizes_dates);
	RUN(test_design_example);
	RUN(test_ranking);
	RUN(test_sql_shape);
	RUN(test_snippets);
	RUN(test_paging);
	RUN(test_plans);
	RUN(test_errors);
	RUN(test_limits);
	sqlite3_close(db);
	DONE();
}
