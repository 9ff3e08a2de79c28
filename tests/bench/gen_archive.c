/*
 * A real archive of N generated messages, written straight into the store
 * (no IMAP), for search at scale (issue 12): the messages go through the
 * same steps as archived mail (pack_writer, header parsing, one fdatasync
 * and one transaction per batch, archive.db rows and locations), then the
 * indexer (index_run, as `emailvault reindex` runs it) fills the full-text
 * index. `emailvault verify`, `search`, `show` and `status` read the result
 * like any archive. Not a test: run it by hand,
 *
 *     cmake --build build --target gen_archive
 *     ./build/gen_archive DATA [messages=100000] [seed=1]
 *
 * The mail is deterministic for a seed: Zipf-distributed words from a
 * generated vocabulary with the usual mail words mixed in ("invoice" in
 * about 5 % of messages), 200 correspondents ("alice" sends about 5 %), a
 * tenth with a German, Russian, Chinese or Japanese sentence, a fifth with
 * a small base64 attachment (image or zip: no PDF, which would start
 * pdftotext for each), Date headers over 2019-2025, locations spread over
 * two sources and three folders each.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "mime/headers.h"
#include "search/indexer.h"
#include "store/db.h"
#include "store/pack.h"
#include "store/store.h"

#define BATCH		2000		/* messages per transaction, as a big import */
#define VOCAB		5000
#define INDEX_STEP	1000

static uint64_t rng;

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
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("gen_archive: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* ---- the text ---------------------------------------------------------- */

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
	"Grace", "Heidi", "Ivan", "Judy", "Jurgen", "Zoe", "Soren", "Anna", "Yamada" };
static const char *const last[] = { "Smith", "Jones", "Miller", "Garcia", "Nguyen",
	"Schmidt", "Rossi", "Dubois", "Kowalski", "Muller", "Tanaka", "Oster", "Gomez" };
static const struct { const char *name, *type; } files[] = {
	{ "photo.jpg", "image/jpeg" }, { "scan.png", "image/png" },
	{ "archive.zip", "application/zip" }, { "data.bin", "application/octet-stream" },
};
#define NELEM(a) (sizeof(a) / sizeof(*(a)))

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
			strcat(vocab[i], syl[rnd() % NELEM(syl)]);
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
		return mailwords[rnd() % NELEM(mailwords)];
	while (lo < hi) {
		int mid = (lo + hi) / 2;

		if (zipf_cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return vocab[lo];
}

/* ---- one message --------------------------------------------------------- */

struct buf {
	char *s;
	size_t len, cap;
};

static void
add(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			die("vsnprintf");
		if ((size_t)n < b->cap - b->len)
			break;
		b->cap = (b->cap + (size_t)n) * 2;
		if ((b->s = realloc(b->s, b->cap)) == NULL)
			die("out of memory");
	}
	b->len += (size_t)n;
}

static void
person(struct buf *b, int alice_bias)
{
	int f = alice_bias && rnd() % 20 == 0 ? 0 : 1 + (int)(rnd() % (NELEM(first) - 1));
	int l = (int)(rnd() % NELEM(last));

	if (f == 0)
		add(b, "Alice %s <alice@example.com>", last[l]);
	else
		add(b, "%s %s <%c%s.%s%u@example.%s>", first[f], last[l],
		    first[f][0] + 'a' - 'A', first[f] + 1, last[l], (unsigned)(rnd() % 2),
		    rnd() % 2 ? "com" : "org");
}

static void
base64(struct buf *b, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, col = 0;

	/* random bytes: an image or a zip does not compress either */
	for (i = 0; i < n; i += 3) {
		uint32_t v = rnd() & 0xFFFFFF;

		add(b, "%c%c%c%c", tab[v >> 18], tab[(v >> 12) & 63], tab[(v >> 6) & 63], tab[v & 63]);
		if ((col += 4) == 76) {
			add(b, "\r\n");
			col = 0;
		}
	}
	add(b, "\r\n");
}

static void
message(struct buf *b, uint64_t n)
{
	int att = rnd() % 5 == 0, inv = rnd() % 20 == 0, words, k, col = 0;
	time_t t = 1546300800 + (time_t)(rnd() % (7u * 365 * 86400));
	char date[64], boundary[40];
	struct tm tm;

	b->len = 0;
	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	add(b, "From: ");
	person(b, 1);
	add(b, "\r\nTo: ");
	person(b, 0);
	if (rnd() % 4 == 0) {
		add(b, "\r\nCc: ");
		person(b, 0);
	}
	add(b, "\r\nSubject: %s %s %s%s\r\n", inv && rnd() % 2 ? "Invoice" : "Re:", word(), word(),
	    rnd() % 3 ? "" : " update");
	add(b, "Date: %s\r\nMessage-ID: <%016llx.%08x@gen.example>\r\nMIME-Version: 1.0\r\n",
	    date, (unsigned long long)n, rnd());
	if (att) {
		snprintf(boundary, sizeof(boundary), "=_gen%08x%08x", rnd(), rnd());
		add(b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n--%s\r\n", boundary,
		    boundary);
	}
	add(b, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
	words = 50 + (int)(rnd() % 350);
	for (k = 0; k < words; k++) {
		const char *w = inv && k == words / 2 ? "invoice" : word();
		int len = (int)strlen(w);

		if (col + len + 1 > 72) {
			add(b, "\r\n");
			col = 0;
		}
		add(b, "%s%s", col ? " " : "", w);
		col += len + (col ? 1 : 0);
	}
	add(b, "\r\n");
	if (rnd() % 10 == 0)
		add(b, "%s\r\n", intl[rnd() % NELEM(intl)]);
	if (att) {
		int f = (int)(rnd() % NELEM(files));

		add(b, "\r\n--%s\r\nContent-Type: %s; name=\"%s\"\r\nContent-Transfer-Encoding: base64"
		    "\r\nContent-Disposition: attachment; filename=\"%s\"\r\n\r\n", boundary,
		    files[f].type, files[f].name, files[f].name);
		base64(b, 1024 + rnd() % 6144);
		add(b, "--%s--\r\n", boundary);
	}
}

/* ---- into the store -------------------------------------------------------- */

struct pending {
	char hash[65];
	uint64_t size;
	struct mime_headers *headers;
	struct pack_location loc;
	int existed;
	int where;			/* locations[where] */
};

static const struct { const char *source, *folder; } locations[] = {
	{ "work", "INBOX" }, { "work", "Archive" }, { "work", "Sent" },
	{ "home", "INBOX" }, { "home", "Archive" }, { "home", "Sent" },
};
static uint32_t next_uid[NELEM(locations)];

static void
commit(struct store *s, struct pending *p, int n)
{
	struct archive_db *db = s->db;
	int i;

	if (pack_store_sync(s->packs) < 0)
		die("fdatasync: %s", strerror(errno));
	if (db_begin(db) < 0)
		die("begin: %s", db_errmsg(db));
	for (i = 0; i < n; i++) {
		struct db_message m;

		memset(&m, 0, sizeof(m));
		m.hash = p[i].hash;
		m.size = p[i].size;
		m.pack_segment = p[i].loc.segment;
		m.pack_offset = p[i].loc.offset;
		m.pack_length = p[i].loc.length;
		m.pack_codec = p[i].loc.codec;
		m.subject = mime_headers_subject(p[i].headers);
		m.from = mime_headers_from(p[i].headers);
		m.to = mime_headers_to(p[i].headers);
		m.cc = mime_headers_cc(p[i].headers);
		m.date = mime_headers_date(p[i].headers);
		m.date_unix = mime_headers_date_unix(p[i].headers);
		m.message_id = mime_headers_message_id(p[i].headers);
		m.from_addrs = mime_headers_from_addrs(p[i].headers);
		m.to_addrs = mime_headers_to_addrs(p[i].headers);
		m.sort_date = db_date_sane(m.date_unix) ? m.date_unix : -1;
		if (db_message_add(db, &m, NULL) < 0 ||
		    db_location_add(db, locations[p[i].where].source, locations[p[i].where].folder,
		    1, ++next_uid[p[i].where], p[i].hash, "\\Seen", m.date_unix) < 0)
			die("insert: %s", db_errmsg(db));
		mime_headers_free(p[i].headers);
	}
	if (pack_store_record(s->packs) < 0 || db_commit(db) < 0)
		die("commit: %s", db_errmsg(db));
	if (pack_store_committed(s->packs) < 0)
		die("sealing a segment: %s", strerror(errno));
}

static uint64_t
generate(struct store *s, uint64_t total)
{
	struct pending *p = calloc(BATCH, sizeof(*p));
	struct buf b = { 0 };
	uint64_t i, raw = 0;
	int n = 0;
	size_t k;

	if (p == NULL)
		die("out of memory");
	for (i = 0; i < total; i++) {
		struct pack_writer *w = pack_writer_new(s->packs);
		const char *head;
		size_t hlen;

		message(&b, i);
		if (w == NULL || pack_writer_write(w, b.s, b.len) < 0 || pack_writer_finish(w) < 0)
			die("pack_writer: %s", strerror(errno));
		snprintf(p[n].hash, sizeof(p[n].hash), "%s", pack_writer_hash(w));
		p[n].size = pack_writer_size(w);
		head = pack_writer_head(w, &hlen);
		if ((p[n].headers = mime_headers_parse(head, hlen)) == NULL)
			die("out of memory");
		pack_writer_drop_head(w);
		if (pack_writer_store(w, &p[n].existed, &p[n].loc) < 0)
			die("storing: %s", strerror(errno));
		pack_writer_free(w);
		if (p[n].existed)
			die("message %llu is a duplicate", (unsigned long long)i);
		p[n].where = (int)(rnd() % NELEM(locations));
		raw += b.len;
		if (++n == BATCH || i + 1 == total) {
			commit(s, p, n);
			n = 0;
		}
		if ((i + 1) % 100000 == 0)
			fprintf(stderr, "  %llu messages stored\n", (unsigned long long)(i + 1));
	}
	if (db_begin(s->db) < 0)
		die("begin: %s", db_errmsg(s->db));
	for (k = 0; k < NELEM(locations); k++)
		if (db_folder_set_uidvalidity(s->db, locations[k].source, locations[k].folder, 1) < 0 ||
		    db_folder_set_progress(s->db, locations[k].source, locations[k].folder,
		    next_uid[k]) < 0 ||
		    db_folder_set_on_server(s->db, locations[k].source, locations[k].folder,
		    next_uid[k]) < 0)
			die("folders: %s", db_errmsg(s->db));
	if (db_commit(s->db) < 0)
		die("commit: %s", db_errmsg(s->db));
	free(b.s);
	free(p);
	return raw;
}

static void
index_all(const char *data, uint64_t total)
{
	char err[512];
	struct index_run *r = index_run_open(data, err, sizeof(err));
	uint64_t done = 0, next = 100000;
	int n;

	if (r == NULL)
		die("indexer: %s", err);
	while ((n = index_run_step(r, INDEX_STEP, err, sizeof(err))) > 0) {
		done += (uint64_t)n;
		if (done >= next) {
			fprintf(stderr, "  %llu of %llu messages indexed\n", (unsigned long long)done,
			    (unsigned long long)total);
			next += 100000;
		}
	}
	if (n < 0)
		die("indexer: %s", err);
	index_run_close(r);
}

int
main(int argc, char **argv)
{
	char err[512], path[4096];
	uint64_t total = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000, raw;
	struct store *s;
	struct stat st;
	double t0, t1;

	if (argc < 2 || total == 0)
		die("usage: gen_archive DATA [messages=100000] [seed=1]");
	rng = 0x9E3779B97F4A7C15ull ^ (argc > 3 ? strtoull(argv[3], NULL, 10) : 1);
	snprintf(path, sizeof(path), "%s/archive.db", argv[1]);
	if (stat(path, &st) == 0)
		die("%s exists: give a new data folder", path);
	if (mkdir(argv[1], 0700) < 0 && errno != EEXIST)
		die("%s: %s", argv[1], strerror(errno));
	make_vocab();
	t0 = now();
	if ((s = store_open(argv[1], 0, err, sizeof(err))) == NULL)
		die("%s", err);
	raw = generate(s, total);
	store_close(s);
	t1 = now();
	printf("stored %llu messages (%.1f MB raw) in %.1f s: %.0f msg/s\n",
	    (unsigned long long)total, raw / 1e6, t1 - t0, total / (t1 - t0));
	fflush(stdout);
	index_all(argv[1], total);
	printf("indexed them in %.1f s: %.0f msg/s\n", now() - t1, total / (now() - t1));
	mime_shutdown();
	return 0;
}
