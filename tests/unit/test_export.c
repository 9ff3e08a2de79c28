/* Export: mboxrd quoting in pieces gives what quoting the whole message
 * gives; messages of any size go out of the store byte-exact in bounded
 * memory; one that cannot be read stops the export and leaves nothing. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "packed.h"
#include "export/export.h"
#include "export/mboxrd.h"
#include "store/reader.h"

#if defined(__SANITIZE_ADDRESS__)
/* ASan's quarantine of freed memory would count in the peak RSS check. */
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
	return "quarantine_size_mb=4";
}
#endif

static char dir[] = "/tmp/ev-test-export-XXXXXX";

/* ---- quoting ----------------------------------------------------------- */

/* The rule on a whole message, as the spec says it: one more '>' before
 * every line that is ">*From ". */
static char *
reference_quote(const char *d, size_t n, size_t *outlen)
{
	char *out = malloc(2 * n + 1);
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (i == 0 || d[i - 1] == '\n') {
			size_t j = i;
			while (j < n && d[j] == '>')
				j++;
			if (n - j >= 5 && memcmp(d + j, "From ", 5) == 0)
				out[o++] = '>';
		}
		out[o++] = d[i];
	}
	*outlen = o;
	return out;
}

struct buf {
	char *p;
	size_t len, cap;
	size_t fail_after;	/* bytes: the output fails past them (0: never) */
};

static int
buf_out(void *ud, const char *p, size_t n)
{
	struct buf *b = ud;

	if (b->fail_after && b->len + n > b->fail_after)
		return -1;
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

/* D quoted in pieces of STEP bytes. */
static struct buf
quote_in_pieces(const char *d, size_t n, size_t step)
{
	struct mboxrd_quoter q;
	struct buf b = { 0 };

	mboxrd_quote_init(&q);
	for (size_t at = 0; at < n; at += step) {
		size_t k = n - at < step ? n - at : step;
		CHECK_INT(mboxrd_quote(&q, d + at, k, buf_out, &b), 0);
	}
	CHECK_INT(mboxrd_quote_end(&q, buf_out, &b), 0);
	return b;
}

static int
same_as_reference(const char *d, size_t n, const struct buf *b)
{
	size_t rlen;
	char *r = reference_quote(d, n, &rlen);
	int same = rlen == b->len && (rlen == 0 || memcmp(r, b->p, rlen) == 0);

	free(r);
	return same;
}

static void
test_quote_cases(void)
{
	static const char *const cases[] = {
		"", "From ", "From", ">From ", ">>From x\n", "From x\nFrom y\n",
		"a\nFrom b\n>From c\n>>From d\n>x From e\nFro\nFrom", "\n\nFrom \n",
		"From\r\nFrom \r\n>\r\n>>>\n>>>From \n", "x>From \n>From>From \n",
		"From: a@example.com\r\n\r\nFrom here on\r\n>From quoted\r\n>>From twice\r\nFrom",
		">", ">>", "\n>", "\nF", "\nFrom",
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const char *d = cases[c];
		size_t n = strlen(d);
		/* whole, one byte at a time, and cut once at every point */
		for (size_t step = 1; step <= n + 1; step++) {
			struct buf b = quote_in_pieces(d, n, step);
			CHECK(same_as_reference(d, n, &b));
			free(b.p);
		}
		for (size_t cut = 0; cut <= n; cut++) {
			struct mboxrd_quoter q;
			struct buf b = { 0 };
			mboxrd_quote_init(&q);
			CHECK_INT(mboxrd_quote(&q, d, cut, buf_out, &b), 0);
			CHECK_INT(mboxrd_quote(&q, d + cut, n - cut, buf_out, &b), 0);
			CHECK_INT(mboxrd_quote_end(&q, buf_out, &b), 0);
			CHECK(same_as_reference(d, n, &b));
			free(b.p);
		}
	}
}

/* Random text of the bytes that matter, in random pieces. */
static void
test_quote_random(void)
{
	static const char alphabet[] = ">>>From \n\r\nx";
	unsigned x = 7;
	char d[64];
	int bad = 0;

	for (int round = 0; round < 20000; round++) {
		size_t n = (x = x * 1103515245u + 12345u) >> 26;
		for (size_t i = 0; i < n; i++)
			d[i] = alphabet[((x = x * 1103515245u + 12345u) >> 16) % (sizeof(alphabet) - 1)];
		size_t step = 1 + (((x = x * 1103515245u + 12345u) >> 16) % 9);
		struct buf b = quote_in_pieces(d, n, step);
		bad += !same_as_reference(d, n, &b);
		free(b.p);
	}
	CHECK_INT(bad, 0);
}

/* A line of 100,000 '>' is held as a count, and quoted when "From "
 * follows; the output failing stops the quoting. */
static void
test_quote_long_runs_and_failure(void)
{
	size_t n = 100000;
	char *d = malloc(n + 16);
	struct buf b;

	memset(d, '>', n);
	memcpy(d + n, "From x\n>", 8);
	b = quote_in_pieces(d, n + 8, 7);
	CHECK(same_as_reference(d, n + 8, &b));
	CHECK_INT(b.len, n + 9);
	free(b.p);
	memcpy(d + n, "Frog x\n", 7);
	b = quote_in_pieces(d, n + 7, 4096);
	CHECK(b.len == n + 7 && memcmp(b.p, d, n + 7) == 0);
	free(b.p);

	struct mboxrd_quoter q;
	struct buf f = { .fail_after = 10 };
	mboxrd_quote_init(&q);
	CHECK_INT(mboxrd_quote(&q, "From a\nabcdefgh\n", 16, buf_out, &f), -1);
	mboxrd_quote_init(&q);
	f.len = 0;
	CHECK_INT(mboxrd_quote(&q, d, 1000, buf_out, &f), 0);	/* held, nothing out */
	CHECK_INT(mboxrd_quote_end(&q, buf_out, &f), -1);
	free(f.p);
	free(d);
}

/* ---- exporting from the store -------------------------------------------- */

/* A message of about SIZE bytes made line by line as it is read: headers,
 * then lines of text with ">*From " lines among them, some falling across
 * the 64 KiB reads of the store. */
struct maker {
	size_t size, made;
	unsigned line;
	char pending[128];
	size_t plen, pat;
	size_t quoted;		/* lines that get one more '>' */
};

static size_t
make_message(void *ud, char *out, size_t cap)
{
	struct maker *m = ud;
	size_t o = 0;

	while (o < cap) {
		if (m->pat == m->plen) {
			if (m->made >= m->size)
				break;
			unsigned l = m->line++;
			if (l == 0)
				m->plen = (size_t)snprintf(m->pending, sizeof(m->pending),
				    "From: a@example.com\r\nSubject: big %zu\r\n\r\n", m->size);
			else if (l % 97 == 0 || l % 89 == 0)
				m->plen = (size_t)snprintf(m->pending, sizeof(m->pending),
				    "%.*sFrom line %u\r\n", (int)(l % 4), ">>>", l);
			else
				m->plen = (size_t)snprintf(m->pending, sizeof(m->pending),
				    "text line %u, and %.*s\r\n", l, (int)(l % 53),
				    "From the start to the end of the line, nothing new");
			if (l > 0 && (l % 97 == 0 || l % 89 == 0))
				m->quoted++;
			m->pat = 0;
		}
		size_t k = m->plen - m->pat;
		if (k > cap - o)
			k = cap - o;
		memcpy(out + o, m->pending + m->pat, k);
		m->pat += k;
		m->made += k;
		o += k;
	}
	return o;
}

static char *
made_whole(size_t size, size_t *len)
{
	struct maker m = { .size = size };
	char *p = malloc(size + 256);

	*len = make_message(&m, p, size + 256);
	return p;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	p = malloc((size_t)n + 1);
	*len = fread(p, 1, (size_t)n, f);
	fclose(f);
	return p;
}

/* The messages of an mbox back: after each From_ line, unquoted, without
 * the newline the writer adds. Checks that there are N and that message I
 * is MSGS[I]. */
static void
check_mbox(const char *path, char *const *msgs, const size_t *lens, int n)
{
	size_t len, at = 0;
	char *d = slurp(path, &len);
	int i = 0;

	CHECK(d != NULL);
	if (d == NULL)
		return;
	for (; i < n && at < len; i++) {
		CHECK(len - at > 5 && memcmp(d + at, "From ", 5) == 0);
		at = (size_t)((char *)memchr(d + at, '\n', len - at) - d) + 1;
		/* unquote up to the expected length */
		size_t o = 0, start = at;
		int ok = 1;
		while (o < lens[i] && at < len) {
			if ((at == start || d[at - 1] == '\n') && d[at] == '>') {
				size_t j = at;
				while (j < len && d[j] == '>')
					j++;
				if (len - j >= 5 && memcmp(d + j, "From ", 5) == 0)
					at++;
			}
			if (d[at++] != msgs[i][o++]) {
				ok = 0;
				break;
			}
		}
		CHECK(ok && o == lens[i]);
		CHECK(at < len && d[at] == '\n');
		at++;
	}
	CHECK_INT(i, n);
	CHECK(at == len);
	free(d);
}

static int
count_files(const char *path)
{
	DIR *dp = opendir(path);
	struct dirent *e;
	int n = 0;

	if (dp == NULL)
		return -1;
	while ((e = readdir(dp)) != NULL)
		n += e->d_name[0] != '.' || (e->d_name[1] != '\0' && e->d_name[1] != '.');
	closedir(dp);
	return n;
}

/* Begins message A and writes 10 bytes of it, then begins B without
 * ending A, writes all of B and ends it: an export to OUT in FORMAT. */
static void
begin_twice(enum export_format format, const char *out, const char *a, const char *a_bytes,
    const char *b, const char *b_bytes, size_t b_len)
{
	struct export_opts o = { .format = format, .out = out };
	struct export_msg ma = { .hash = a, .date = 1700000000 };
	struct export_msg mb = { .hash = b, .date = 1700000002 };
	char err[512];
	struct exporter *x = exporter_open(&o, err, sizeof(err));

	CHECK(x != NULL);
	if (x == NULL)
		return;
	CHECK_INT(exporter_begin(x, &ma, err, sizeof(err)), 0);
	CHECK_INT(exporter_write(x, a_bytes, 10), 0);
	CHECK_INT(exporter_begin(x, &mb, err, sizeof(err)), 0);
	CHECK_INT(exporter_write(x, b_bytes, b_len), 0);
	CHECK_INT(exporter_end(x, 1, err, sizeof(err)), 0);
	CHECK_INT(exporter_close(x, 1, err, sizeof(err)), 0);
}

static void
test_export_stored(void)
{
	char err[512], path[4200], hash[3][65];
	struct archive_db *db = db_open(dir, 0, err, sizeof(err));
	struct pack_store *ps = db ? pack_store_open(dir, db_handle(db), err, sizeof(err)) : NULL;
	struct pack_location loc[3];
	struct store_reader *r;
	struct exporter *x;
	char *msgs[3];
	size_t lens[3];
	static const size_t sizes[3] = { 300, 3u << 20, (1u << 20) + 1 };

	CHECK(ps != NULL);
	if (ps == NULL)
		return;
	for (int i = 0; i < 3; i++) {
		struct maker m = { .size = sizes[i] };
		archive_made(db, ps, make_message, &m, &loc[i], hash[i]);
		msgs[i] = made_whole(sizes[i], &lens[i]);
	}
	CHECK((r = store_reader_open(dir)) != NULL);

	static const enum export_format formats[] = { EXPORT_MBOX, EXPORT_EML, EXPORT_MAILDIR };
	for (int f = 0; f < 3; f++) {
		snprintf(path, sizeof(path), "%s/out%d", dir, f);
		struct export_opts o = { .format = formats[f], .out = path };
		CHECK((x = exporter_open(&o, err, sizeof(err))) != NULL);
		for (int i = 0; i < 3; i++) {
			struct export_msg m = { .hash = hash[i], .date = 1700000000 + i };
			CHECK_INT(exporter_add_stored(x, &m, r, err, sizeof(err)), 0);
		}
		CHECK_INT(exporter_close(x, 1, err, sizeof(err)), 0);
	}
	snprintf(path, sizeof(path), "%s/out0", dir);
	check_mbox(path, msgs, lens, 3);
	for (int i = 0; i < 3; i++) {
		char name[4300];
		size_t len;
		char *d;
		snprintf(name, sizeof(name), "%s/out1/20231114-%06d-%.16s.eml", dir, 221320 + i,
		    hash[i]);
		d = slurp(name, &len);
		CHECK(d != NULL && len == lens[i] && memcmp(d, msgs[i], len) == 0);
		free(d);
		snprintf(name, sizeof(name), "%s/out2/cur/%d.%.32s.emailvault:2,", dir,
		    1700000000 + i, hash[i]);
		d = slurp(name, &len);
		CHECK(d != NULL && len == lens[i] && memcmp(d, msgs[i], len) == 0);
		free(d);
	}
	snprintf(path, sizeof(path), "%s/out2/tmp", dir);
	CHECK_INT(count_files(path), 0);

	/* The big message damaged: the export stops, says so, and leaves no
	 * mbox, no .eml and no temporary file. */
	damage(pack_store_dir(ps), &loc[1]);
	for (int f = 0; f < 2; f++) {
		snprintf(path, sizeof(path), "%s/bad%d", dir, f);
		struct export_opts o = { .format = formats[f], .out = path };
		CHECK((x = exporter_open(&o, err, sizeof(err))) != NULL);
		struct export_msg m0 = { .hash = hash[0], .date = 1700000000 };
		struct export_msg m1 = { .hash = hash[1], .date = 1700000001 };
		CHECK_INT(exporter_add_stored(x, &m0, r, err, sizeof(err)), 0);
		err[0] = '\0';
		CHECK_INT(exporter_add_stored(x, &m1, r, err, sizeof(err)), -1);
		CHECK(strstr(err, "cannot be read") != NULL && strstr(err, hash[1]) != NULL);
		exporter_close(x, 0, err, sizeof(err));
		struct stat st;
		if (f == 0) {
			CHECK(stat(path, &st) < 0);
			snprintf(path, sizeof(path), "%s/bad0.tmp", dir);
			CHECK(stat(path, &st) < 0);
		} else {
			CHECK_INT(count_files(path), 1);	/* the good one alone */
		}
	}

	/* A message begun and never ended when the next begins: dropped, its
	 * temporary file too (in an mbox, its "From " line and part); the next
	 * is written whole. */
	snprintf(path, sizeof(path), "%s/again", dir);
	begin_twice(EXPORT_EML, path, hash[0], msgs[0], hash[2], msgs[2], lens[2]);
	{
		char name[4300];
		size_t len;
		char *d;
		CHECK_INT(count_files(path), 1);
		snprintf(name, sizeof(name), "%s/20231114-%06d-%.16s.eml", path, 221322, hash[2]);
		d = slurp(name, &len);
		CHECK(d != NULL && len == lens[2] && memcmp(d, msgs[2], len) == 0);
		free(d);
	}
	snprintf(path, sizeof(path), "%s/again.mbox", dir);
	begin_twice(EXPORT_MBOX, path, hash[0], msgs[0], hash[2], msgs[2], lens[2]);
	check_mbox(path, &msgs[2], &lens[2], 1);
	/* a damaged one that the caller skips: not left in the mbox in part */
	snprintf(path, sizeof(path), "%s/skipped.mbox", dir);
	{
		struct export_opts o = { .format = EXPORT_MBOX, .out = path };
		struct export_msg ms[3] = { { .hash = hash[0], .date = 1700000000 },
			{ .hash = hash[1], .date = 1700000001 }, { .hash = hash[2], .date = 1700000002 } };
		char *good[2] = { msgs[0], msgs[2] };
		size_t good_len[2] = { lens[0], lens[2] };
		CHECK((x = exporter_open(&o, err, sizeof(err))) != NULL);
		CHECK_INT(exporter_add_stored(x, &ms[0], r, err, sizeof(err)), 0);
		CHECK_INT(exporter_add_stored(x, &ms[1], r, err, sizeof(err)), -1);
		CHECK_INT(exporter_add_stored(x, &ms[2], r, err, sizeof(err)), 0);
		CHECK_INT(exporter_close(x, 1, err, sizeof(err)), 0);
		check_mbox(path, good, good_len, 2);
	}
	store_reader_close(r);
	for (int i = 0; i < 3; i++)
		free(msgs[i]);
	pack_store_close(ps);
	db_close(db);
}

static long
peak_kib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* Runs first, while the process is small: a 64 MiB message adds little
 * to the peak of an mbox export. */
static void
test_export_memory(void)
{
	char err[512], path[4200], hash[65], sub[200];
	struct archive_db *db;
	struct pack_store *ps;
	struct pack_location loc;
	struct store_reader *r;
	struct exporter *x;
	struct maker m = { .size = 64u << 20 };
	struct stat st;
	long before;

	snprintf(sub, sizeof(sub), "%s/memory", dir);
	CHECK_INT(mkdir(sub, 0700), 0);
	db = db_open(sub, 0, err, sizeof(err));
	ps = db ? pack_store_open(sub, db_handle(db), err, sizeof(err)) : NULL;
	CHECK(ps != NULL);
	if (ps == NULL)
		return;
	archive_made(db, ps, make_message, &m, &loc, hash);
	CHECK((r = store_reader_open(sub)) != NULL);
	snprintf(path, sizeof(path), "%s/big.mbox", sub);
	struct export_opts o = { .format = EXPORT_MBOX, .out = path };
	before = peak_kib();
	CHECK((x = exporter_open(&o, err, sizeof(err))) != NULL);
	struct export_msg em = { .hash = hash, .date = 1700000000 };
	CHECK_INT(exporter_add_stored(x, &em, r, err, sizeof(err)), 0);
	CHECK_INT(exporter_close(x, 1, err, sizeof(err)), 0);
	printf("a 64 MiB message exported: peak RSS %ld KiB more (%ld KiB before)\n",
	    peak_kib() - before, before);
	CHECK(peak_kib() - before < 8 * 1024);
	/* "From " line, the message with its quoted lines, the newline */
	CHECK_INT(stat(path, &st), 0);
	CHECK_INT((size_t)st.st_size, strlen("From MAILER-DAEMON Tue Nov 14 22:13:20 2023\n") +
	    m.made + m.quoted + 1);
	store_reader_close(r);
	pack_store_close(ps);
	db_close(db);
}

int
main(void)
{
	char cmd[100];

	if (mkdtemp(dir) == NULL)
		return 1;
	RUN(test_export_memory);
	RUN(test_quote_cases);
	RUN(test_quote_random);
	RUN(test_quote_long_runs_and_failure);
	RUN(test_export_stored);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	DONE();
}
