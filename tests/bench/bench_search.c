/*
 * Search benchmark: an archive.db (temporary file, the schema of issue 9)
 * with N synthetic messages indexed by the emailvault tokenizer, then the
 * latency of queries as `emailvault search` would run them (first page of
 * 50 rows with a snippet, and the whole result counted). Not a test: run
 * it by hand,
 *
 *     cmake --build build --target bench_search
 *     ./build/bench_search [messages=100000] [runs=31]
 *
 * or over a real archive (e.g. one made by gen_archive) with search_run,
 * the function `emailvault search` calls (a first page of 20 hits):
 *
 *     ./build/bench_search --data DIR [runs=31] [query...]
 *
 * The text is mailgen-like: Zipf-distributed words from a generated
 * vocabulary with the usual mail words mixed in (invoice in about 5% of
 * messages), 200 correspondents (alice sends about 5%), a tenth of the
 * messages in German, Russian, Chinese or Japanese, attachments on a
 * fifth, dates over 2019-2025.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "search/query.h"
#include "search/search.h"
#include "search/tokenize.h"

static const char schema[] =
    "CREATE TABLE messages ("
    "  hash TEXT PRIMARY KEY, size INTEGER NOT NULL, subject TEXT, from_text TEXT,"
    "  to_text TEXT, cc_text TEXT, date_text TEXT, date_unix INTEGER, message_id TEXT,"
    "  from_addrs TEXT, to_addrs TEXT, first_seen REAL,"
    "  indexed INTEGER NOT NULL DEFAULT 0, attachments INTEGER, sort_date INTEGER,"
    "  index_note TEXT);"
    "CREATE INDEX messages_date ON messages(date_unix);"
    "CREATE TABLE locations ("
    "  source TEXT NOT NULL, folder TEXT NOT NULL, uidvalidity INTEGER NOT NULL,"
    "  uid INTEGER NOT NULL, hash TEXT NOT NULL, flags TEXT, internaldate INTEGER,"
    "  archived_at REAL, PRIMARY KEY (source, folder, uidvalidity, uid));"
    "CREATE INDEX locations_hash ON locations(hash);"
    "CREATE VIRTUAL TABLE fts USING fts5(subject, sender, recipient, cc, body,"
    "  filename, attachment, tokenize = 'emailvault');";

/* the indexes this benchmark argues for (docs/search.md) */
static const char indexes[] =
    "CREATE INDEX messages_sort_date ON messages(sort_date);";

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

#define VOCAB 5000
static char vocab[VOCAB][16];
static double zipf_cdf[VOCAB];

static const char *const mailwords[] = {
	"meeting", "report", "project", "schedule", "budget", "review", "customer",
	"deadline", "update", "proposal", "contract", "delivery", "support", "network",
	"backup", "release", "quarter", "figures", "attached", "please", "regards",
	"thanks", "tomorrow", "agenda", "minutes", "draft", "final", "version",
};
static const char *const intl[] = {
	"Grüße aus München, die Straße ist schön und das Angebot für 20 Stück möglich.",
	"Привет из Москвы, мы получили ваше письмо и отправили счёт на оплату.",
	"我们已经收到您的发票，请在下周一之前确认会议的时间。",
	"会議のお知らせ：来週の月曜日に東京タワーで打ち合わせをします。",
	"Réunion de lundi à 10h, le café est prêt.",
};
static const char *const first[] = { "Alice", "Bob", "Carol", "Dave", "Erin", "Frank",
	"Grace", "Heidi", "Ivan", "Judy", "Jürgen", "Zoë", "Søren", "Анна", "山田" };
static const char *const last[] = { "Smith", "Jones", "Miller", "Garcia", "Nguyen",
	"Schmidt", "Rossi", "Dubois", "Kowalski", "Müller", "Tanaka", "Øster", "Gómez" };
static const char *const files[] = { "report.pdf", "photo.jpg", "data.xlsx",
	"archive.zip", "scan.png", "Präsentation.pdf", "invoice.pdf" };

static void
make_vocab(void)
{
	static const char *const syl[] = { "ka", "ro", "mi", "te", "su", "lo", "ven",
		"dar", "ix", "el", "on", "ta", "bri", "gu", "sen", "pol", "ar", "ne" };
	double sum = 0;
	int i, j, n;

	for (i = 0; i < VOCAB; i++) {
		n = 2 + (int)(rnd() % 3);
		vocab[i][0] = '\0';
		for (j = 0; j < n; j++)
			strcat(vocab[i], syl[rnd() % 18]);
		sum += 1.0 / (i + 1);
		zipf_cdf[i] = sum;
	}
	for (i = 0; i < VOCAB; i++)
		zipf_cdf[i] /= sum;
}

static const char *
word(void)
{
	double u = (rnd() % 1000000) / 1e6;
	int lo = 0, hi = VOCAB - 1;

	if (rnd() % 10 == 0)
		return mailwords[rnd() % (sizeof mailwords / sizeof *mailwords)];
	while (lo < hi) {
		int mid = (lo + hi) / 2;

		if (zipf_cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return vocab[lo];
}

static void
person(char *out, size_t n, int alice_bias)
{
	int f = alice_bias && rnd() % 20 == 0 ? 0 : 1 + (int)(rnd() % 14);
	int l = (int)(rnd() % 13);

	/* 200 correspondents: first x last x a few domains */
	snprintf(out, n, "%s %s <%s.%s%u@example.%s>", first[f], last[l],
	    f == 0 ? "alice" : "user", last[l], (unsigned)(rnd() % 2), rnd() % 2 ? "com" : "org");
	if (f == 0)
		snprintf(out, n, "Alice %s <alice@example.com>", last[l]);
}

static void
exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", sql, err);
		exit(1);
	}
}

static double
fill(sqlite3 *db, int n, double *mb)
{
	sqlite3_stmt *m, *f, *l;
	char subject[256], from[128], to[128], body[8192], hash[32], fname[64];
	double t0, tfts = 0, t;
	int i, k, words;
	size_t bytes = 0;

	if (sqlite3_prepare_v2(db, "INSERT INTO messages(hash, size, subject, from_text,"
	    " to_text, indexed, attachments, sort_date) VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7)",
	    -1, &m, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO fts(rowid, subject, sender, recipient, cc, body,"
	    " filename, attachment) VALUES (last_insert_rowid(), ?1, ?2, ?3, '', ?4, ?5, '')",
	    -1, &f, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO locations(source, folder, uidvalidity, uid,"
	    " hash) VALUES (?1, ?2, 1, ?3, ?4)", -1, &l, NULL) != SQLITE_OK) {
		fprintf(stderr, "prepare: %s\n", sqlite3_errmsg(db));
		exit(1);
	}
	exec(db, "BEGIN");
	t0 = now();
	for (i = 0; i < n; i++) {
		int att = rnd() % 5 == 0, inv = rnd() % 20 == 0;
		size_t len = 0;

		snprintf(hash, sizeof hash, "%016x%08x", i, rnd());
		snprintf(subject, sizeof subject, "%s %s %s%s", inv && rnd() % 2 ? "Invoice" :
		    "Re:", word(), word(), rnd() % 3 ? "" : " update");
		person(from, sizeof from, 1);
		person(to, sizeof to, 0);
		words = 50 + (int)(rnd() % 350);
		for (k = 0; k < words && len + 40 < sizeof body; k++)
			len += (size_t)snprintf(body + len, sizeof body - len, "%s%s",
			    k ? " " : "", inv && k == words / 2 ? "invoice" : word());
		if (rnd() % 10 == 0 && len + 200 < sizeof body)
			len += (size_t)snprintf(body + len, sizeof body - len, " %s",
			    intl[rnd() % 5]);
		snprintf(fname, sizeof fname, "%s", att ? files[rnd() % 7] : "");
		sqlite3_bind_text(m, 1, hash, -1, SQLITE_STATIC);
		sqlite3_bind_int64(m, 2, 2000 + rnd() % (att ? 3000000 : 60000));
		sqlite3_bind_text(m, 3, subject, -1, SQLITE_STATIC);
		sqlite3_bind_text(m, 4, from, -1, SQLITE_STATIC);
		sqlite3_bind_text(m, 5, to, -1, SQLITE_STATIC);
		sqlite3_bind_int(m, 6, att);
		sqlite3_bind_int64(m, 7, 1546300800 + (int64_t)(rnd() % (7u * 365 * 86400)));
		if (sqlite3_step(m) != SQLITE_DONE)
			exit(1);
		sqlite3_reset(m);
		sqlite3_bind_text(f, 1, subject, -1, SQLITE_STATIC);
		sqlite3_bind_text(f, 2, from, -1, SQLITE_STATIC);
		sqlite3_bind_text(f, 3, to, -1, SQLITE_STATIC);
		sqlite3_bind_text(f, 4, body, (int)len, SQLITE_STATIC);
		sqlite3_bind_text(f, 5, fname, -1, SQLITE_STATIC);
		t = now();
		if (sqlite3_step(f) != SQLITE_DONE)
			exit(1);
		tfts += now() - t;
		sqlite3_reset(f);
		bytes += strlen(subject) + strlen(from) + strlen(to) + len + strlen(fname);
		sqlite3_bind_text(l, 1, rnd() % 3 ? "work" : "home", -1, SQLITE_STATIC);
		sqlite3_bind_text(l, 2, rnd() % 2 ? "INBOX" : rnd() % 2 ? "Archive" : "Sent",
		    -1, SQLITE_STATIC);
		sqlite3_bind_int(l, 3, i + 1);
		sqlite3_bind_text(l, 4, hash, -1, SQLITE_STATIC);
		if (sqlite3_step(l) != SQLITE_DONE)
			exit(1);
		sqlite3_reset(l);
	}
	exec(db, "COMMIT");
	fprintf(stderr, "filled %d messages in %.1f s (fts inserts %.1f s: %.1f MB of text, "
	    "%.1f MB/s)\n", n, now() - t0, tfts, bytes / 1e6, bytes / 1e6 / tfts);
	*mb = bytes / 1e6;
	sqlite3_finalize(m);
	sqlite3_finalize(f);
	sqlite3_finalize(l);
	return tfts;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Runs Q (parse, compile, prepare, step LIMIT rows or all when 0). */
static int
once(sqlite3 *db, const char *q, int limit, int explain)
{
	struct search_query *sq;
	struct search_sql s;
	sqlite3_stmt *st;
	struct search_opts o = { "snippet(fts, -1, '[', ']', '...', 12)", limit, 0 };
	char err[256], *sql;
	int rows = 0;
	size_t n;

	if (search_query_parse(q, strlen(q), &sq, err, sizeof err, NULL) != 0 ||
	    search_query_sql(sq, limit ? &o : NULL, &s, err, sizeof err) != 0) {
		fprintf(stderr, "%s: %s\n", q, err);
		exit(1);
	}
	search_query_free(sq);
	n = strlen(s.sql) + 64;
	sql = malloc(n);
	snprintf(sql, n, "%s%s", explain ? "EXPLAIN QUERY PLAN " : "", s.sql);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
		exit(1);
	}
	search_sql_bind(st, &s);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (explain)
			printf("      plan: %s\n", sqlite3_column_text(st, 3));
		rows++;
	}
	sqlite3_finalize(st);
	search_sql_free(&s);
	free(sql);
	return rows;
}

static void
bench(sqlite3 *db, const char *q, int runs)
{
	double *t = calloc((size_t)runs, sizeof *t), t0;
	int i, limit, rows = 0;

	printf("%s\n", q);
	once(db, q, 50, 1);
	for (limit = 50; limit >= 0; limit -= 50) {
		once(db, q, limit, 0);	/* warm */
		for (i = 0; i < runs; i++) {
			t0 = now();
			rows = once(db, q, limit, 0);
			t[i] = (now() - t0) * 1000;
		}
		qsort(t, (size_t)runs, sizeof *t, cmp_double);
		printf("  %-22s rows %6d  median %7.2f ms  p95 %7.2f ms\n",
		    limit ? "50 rows with snippet" : "all rows, no snippet", rows, t[runs / 2],
		    t[(int)ceil(runs * 0.95) - 1]);
	}
	free(t);
}

static int
count_hit(void *ud, const struct search_hit *h)
{
	(void)h;
	++*(int *)ud;
	return 0;
}

static double
cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* QUERY on a real archive as `emailvault search` runs it; wall and CPU
 * time (on a shared machine the CPU time is the steadier of the two). */
static void
bench_archive(sqlite3 *db, const char *q, int runs)
{
	struct search_run_opts o = { 20, 0 };
	double *t = calloc((size_t)runs, sizeof *t), *c = calloc((size_t)runs, sizeof *c), t0, c0;
	char err[256];
	sqlite3_stmt *st;
	long total = 0;
	int i, hits = 0, col;

	if (t == NULL || c == NULL || search_select_for_export(db, q, &st, &total, err, sizeof err, &col) != 0) {
		fprintf(stderr, "%s: %s\n", q, err);
		exit(1);
	}
	sqlite3_finalize(st);
	once(db, q, 20, 1);
	for (i = -1; i < runs; i++) {	/* -1: warm */
		hits = 0;
		t0 = now();
		c0 = cpu_now();
		if (search_run(db, q, &o, count_hit, &hits, err, sizeof err, &col) != 0) {
			fprintf(stderr, "%s: %s\n", q, err);
			exit(1);
		}
		if (i >= 0) {
			t[i] = (now() - t0) * 1000;
			c[i] = (cpu_now() - c0) * 1000;
		}
	}
	qsort(t, (size_t)runs, sizeof *t, cmp_double);
	qsort(c, (size_t)runs, sizeof *c, cmp_double);
	printf("  %-52s matches %7ld  median %7.2f ms  p95 %7.2f ms  CPU median %7.2f ms\n", q,
	    total, t[runs / 2], t[(int)ceil(runs * 0.95) - 1], c[runs / 2]);
	fflush(stdout);
	free(t);
	free(c);
}

static int
real_archive(const char *dir, int runs, char **only, int nonly)
{
	static const char *const queries[] = {
		"invoice",
		"from:alice has:attachment after:2024-01-01 invoice",
		"meeting report -draft",
		"from:alice OR larger:2M",
		"folder:INBOX source:work -invoice",
		"会议",
	};
	char path[4096];
	sqlite3 *db;
	size_t i;

	snprintf(path, sizeof path, "%s/archive.db", dir);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    search_tokenizer_register(db) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(db));
		return 1;
	}
	printf("%s, first page of 20 hits as `emailvault search` asks, %d runs\n", path, runs);
	for (i = 0; nonly == 0 && i < sizeof queries / sizeof *queries; i++)
		bench_archive(db, queries[i], runs);
	for (i = 0; i < (size_t)nonly; i++)
		bench_archive(db, only[i], runs);
	sqlite3_close(db);
	return 0;
}

int
main(int argc, char **argv)
{
	int n, runs;
	char path[] = "/tmp/bench_search_XXXXXX";
	double mb, secs;
	sqlite3 *db;
	int fd;

	if (argc > 2 && strcmp(argv[1], "--data") == 0)
		return real_archive(argv[2], argc > 3 ? atoi(argv[3]) : 31, argv + 4,
		    argc > 4 ? argc - 4 : 0);
	n = argc > 1 ? atoi(argv[1]) : 100000;
	runs = argc > 2 ? atoi(argv[2]) : 31;

	if ((fd = mkstemp(path)) < 0)
		return 1;
	close(fd);
	if (sqlite3_open(path, &db) != SQLITE_OK || search_tokenizer_register(db) != SQLITE_OK)
		return 1;
	exec(db, "PRAGMA journal_mode = WAL");
	exec(db, schema);
	exec(db, indexes);
	make_vocab();
	secs = fill(db, n, &mb);
	printf("%d messages, %.1f MB of text indexed at %.1f MB/s\n", n, mb, mb / secs);
	exec(db, "ANALYZE");
	sqlite3_close(db);
	/* a fresh connection, as a search command would have; first with the
	 * index as incremental inserts leave it, then merged */
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    search_tokenizer_register(db) != SQLITE_OK)
		return 1;
	printf("-- fts as inserted\n");
	bench(db, "invoice", runs);
	bench(db, "from:alice has:attachment after:2024-01-01 invoice", runs);
	sqlite3_close(db);
	if (sqlite3_open(path, &db) != SQLITE_OK || search_tokenizer_register(db) != SQLITE_OK)
		return 1;
	exec(db, "INSERT INTO fts(fts) VALUES ('optimize')");
	sqlite3_close(db);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    search_tokenizer_register(db) != SQLITE_OK)
		return 1;
	printf("-- fts after 'optimize'\n");
	bench(db, "invoice", runs);
	bench(db, "from:alice has:attachment after:2024-01-01 invoice", runs);
	bench(db, "from:alice OR larger:2M", runs);
	bench(db, "folder:INBOX source:work -invoice", runs);
	bench(db, "meeting report -draft", runs);
	bench(db, "会议", runs);
	bench(db, "", runs);
	sqlite3_close(db);
	unlink(path);
	{
		char wal[64];

		snprintf(wal, sizeof wal, "%s-wal", path);
		unlink(wal);
		snprintf(wal, sizeof wal, "%s-shm", path);
		unlink(wal);
	}
	return 0;
}
