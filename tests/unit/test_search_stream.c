/*
 * Text extraction over a stream (extract_stream): the same text as from
 * memory for every fixture and corpus message, however the reads fall; a
 * message of 96 MiB read with a few MiB; what is held, and where that
 * stops; a read that fails.
 */
#include <sys/resource.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "check.h"
#include "pieces.h"
#include "mailfiles.h"
#include "mime/headers.h"
#include "search/extract.h"
#include "search/lines.h"

static int
same(const struct extract_text *a, const struct extract_text *b)
{
	return strcmp(a->subject, b->subject) == 0 && strcmp(a->from, b->from) == 0 &&
	    strcmp(a->to, b->to) == 0 && strcmp(a->cc, b->cc) == 0 &&
	    strcmp(a->body, b->body) == 0 && strcmp(a->filenames, b->filenames) == 0 &&
	    strcmp(a->attachments, b->attachments) == 0 &&
	    a->attachment_count == b->attachment_count &&
	    a->truncated == b->truncated && strcmp(a->note, b->note) == 0;
}

/* DATA extracted from memory and over reads of several sizes: 0 when
 * they all agree. */
static int
compare(const char *data, size_t len, const struct extract_limits *lim)
{
	static const size_t steps[] = { 1, 7, 4093, 0 };
	struct extract_text mem, st;
	size_t i;
	int bad = 0;

	if (extract_message(data, len, lim, &mem) != 0)
		return 1;
	for (i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		struct src s = { data, len, 0, steps[i], 0, 0 };

		if (extract_stream(src_read, &s, lim, &st) != 0) {
			bad++;
			continue;
		}
		bad += !same(&mem, &st);
		extract_text_free(&st);
	}
	extract_text_free(&mem);
	return bad;
}

static void
test_same_as_memory(void)
{
	struct extract_limits def, small;
	char dir[4096];
	size_t i, bad = 0;

	extract_limits_default(&def);
	extract_limits_default(&small);
	small.max_text = 300;
	small.max_depth = 3;
	small.max_parts = 5;
	small.pdf = 0;
	snprintf(dir, sizeof dir, "%s/mail", fixtures());
	load_dir(dir);
	CHECK(nmsgs > 20);
	if (find_corpus())
		load_dir(corpus);
	else
		printf("SKIP the corpus: %s not found\n", corpus);
	for (i = 0; i < nmsgs; i++) {
		/* PDFs from the fixtures only: a child each time */
		def.pdf = strstr(msgs[i].path, "/fixtures/") != NULL;
		if (compare(msgs[i].data, msgs[i].len, &def) != 0 ||
		    compare(msgs[i].data, msgs[i].len, &small) != 0) {
			fprintf(stderr, "not the same over a stream: %s\n", msgs[i].path);
			bad++;
		}
	}
	CHECK_INT(bad, 0);
	printf("%zu messages: the same from memory and over reads of 1, 7, 4093 bytes and more\n",
	    nmsgs);
	for (i = 0; i < nmsgs; i++) {
		free(msgs[i].path);
		free(msgs[i].data);
	}
	free(msgs);
	msgs = NULL;
	nmsgs = capmsgs = 0;
}

/* A message made as it is read: a text part, SIZE bytes of base64, a
 * text part of TEXT bytes of words that ends in "lastword", the close. */
struct big {
	size_t size, text, at;
	const char *head, *mid, *tail;
};

static ssize_t
big_read(void *ud, void *buf, size_t cap)
{
	struct big *b = ud;
	size_t nh = strlen(b->head), nm = strlen(b->mid), nt = strlen(b->tail);
	size_t total = nh + b->size + nm + b->text + nt, k;
	char *out = buf;

	for (k = 0; k < cap && b->at < total; k++, b->at++) {
		size_t at = b->at;

		if (at < nh)
			out[k] = b->head[at];
		else if ((at -= nh) < b->size)
			out[k] = at % 77 == 76 ? '\n' : "QUJD"[at % 4];
		else if ((at -= b->size) < nm)
			out[k] = b->mid[at];
		else if ((at -= nm) < b->text)
			out[k] = at % 60 == 59 ? '\n' : "wordy "[at % 6];
		else
			out[k] = b->tail[at - b->text];
	}
	return (ssize_t)k;
}

#if defined(__SANITIZE_ADDRESS__)
/* ASan keeps freed memory out of use for a while (its quarantine, 256 MiB
 * by default), which the peak RSS checks here would count as held. */
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
	return "quarantine_size_mb=4";
}
#endif

/* HEAD, then UNIT COUNT times, then TAIL, made as it is read. */
struct repeat {
	const char *head, *unit, *tail;
	size_t count, at;
};

static ssize_t
repeat_read(void *ud, void *buf, size_t cap)
{
	struct repeat *r = ud;
	size_t nh = strlen(r->head), nu = strlen(r->unit), nt = strlen(r->tail);
	size_t total = nh + nu * r->count + nt, k;
	char *out = buf;

	for (k = 0; k < cap && r->at < total; k++, r->at++)
		out[k] = r->at < nh ? r->head[r->at] : r->at < nh + nu * r->count ?
		    r->unit[(r->at - nh) % nu] : r->tail[r->at - nh - nu * r->count];
	return (ssize_t)k;
}

static long
peak_kib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* Runs first, while the process is small: the peak is its own. */
static void
test_big_message(void)
{
	struct big b = { 96u << 20, 3u << 20, 0,
	    "Subject: big\nContent-Type: multipart/mixed; boundary=zz\n\n"
	    "--zz\nContent-Type: text/plain\n\nfirstword here\n"
	    "--zz\nContent-Type: multipart/alternative; boundary=yy\n"	/* empty */
	    "--zz\nContent-Type: application/octet-stream; name=blob.bin\n"
	    "Content-Transfer-Encoding: base64\n\n",
	    "\n--zz\nContent-Type: text/plain\n\n",
	    "\nlastword here\n--zz--\n" };
	struct extract_text t;
	long before = peak_kib();

	CHECK_INT(extract_stream(big_read, &b, NULL, &t), 0);
	/* 99 MiB read; held: the buffers and 3 MiB of text */
	printf("a 99 MiB message: peak RSS %ld KiB more\n", peak_kib() - before);
	CHECK(peak_kib() - before < 16 * 1024);
	CHECK_STR(t.subject, "big");
	CHECK(strncmp(t.body, "firstword here\n\nwordy wordy", 27) == 0);
	CHECK(strlen(t.body) > (3u << 20) * 9 / 10);
	CHECK(strstr(t.body, "lastword here") != NULL);	/* after all of it */
	CHECK_STR(t.filenames, "blob.bin");
	CHECK_STR(t.attachments, "");
	CHECK_INT(t.attachment_count, 1);
	CHECK_INT(t.truncated, 0);
	extract_text_free(&t);

	/* an empty multipart last, then all of it as the epilogue: nothing
	 * held from that multipart on */
	b = (struct big){ 96u << 20, 0, 0,
	    "Subject: epilogue\nContent-Type: multipart/mixed; boundary=zz\n\n"
	    "--zz\nContent-Type: multipart/alternative; boundary=yy\n--zz--\n", "", "" };
	before = peak_kib();
	CHECK_INT(extract_stream(big_read, &b, NULL, &t), 0);
	CHECK(peak_kib() - before < 16 * 1024);
	CHECK_STR(t.subject, "epilogue");
	extract_text_free(&t);

	/* 32 MiB of folded lines, of one long line, of blank lines before
	 * the headers: what is held stops at 1 MiB */
	{
		static const struct { const char *head, *unit, *tail, *subject, *note; } c[] = {
			{ "Subject: s\n", " folded line\n", "\nbody\n", "s folded line",
			    "header block" },
			{ "Subject: s", "a", "\n\nbody\n", "saaa", "header block" },
			{ "", "\n", "Subject: s\n\nbody\n", "s", "" },
			{ "", "  \t ", "\nSubject: s\n\nbody\n", "s", "" },
		};
		for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
			struct repeat r = { c[i].head, c[i].unit, c[i].tail,
			    (32u << 20) / strlen(c[i].unit), 0 };

			CHECK_INT(extract_stream(repeat_read, &r, NULL, &t), 0);
			CHECK(peak_kib() - before < 16 * 1024);
			CHECK(strncmp(t.subject, c[i].subject, strlen(c[i].subject)) == 0);
			CHECK(strstr(t.note, c[i].note) != NULL);
			if (c[i].note[0] == '\0')
				CHECK_STR(t.body, "body");
			extract_text_free(&t);
		}
	}
}

static void
test_read_error(void)
{
	const char *m = "Subject: x\n\nsome text\nand more text\n";
	struct src s = { m, strlen(m), 0, 5, 20, 1 };
	struct extract_text t;

	errno = 0;
	CHECK_INT(extract_stream(src_read, &s, NULL, &t), -1);
	CHECK_INT(errno, EIO);
	CHECK(t.subject == NULL && t.body == NULL);	/* nothing to free */
}

/* Held bytes over a source stop at LINES_HOLD_MAX, and say so; in memory
 * they cost nothing and do not stop. */
static void
test_held(void)
{
	size_t n = LINES_HOLD_MAX + 4096, i;
	GString *hb = g_string_new("Subject: first\n");
	GString *pre = g_string_new("Subject: p\nContent-Type: multipart/mixed; boundary=q\n\n");
	struct extract_text t;
	struct src s;

	/* a header block longer than can be held, then a body */
	for (i = 0; hb->len < n; i++)
		g_string_append_printf(hb, "X-Line-%zu: some value\n", i);
	g_string_append(hb, "Subject: late\n\nthe body text\n");
	s = (struct src){ hb->str, hb->len, 0, 0, 0, 0 };
	CHECK_INT(extract_stream(src_read, &s, NULL, &t), 0);
	CHECK_STR(t.subject, "first");
	CHECK(strstr(t.note, "a header block over 1 MiB cut") != NULL);
	CHECK(strstr(t.body, "the body text") != NULL);
	extract_text_free(&t);
	CHECK_INT(extract_message(hb->str, hb->len, NULL, &t), 0);
	CHECK_STR(t.subject, "first");
	CHECK_STR(t.note, "");
	CHECK_STR(t.body, "the body text");
	extract_text_free(&t);

	/* a multipart with no delimiter of its own: the body is its part */
	g_string_append(pre, "Content-Type: text/plain\n\nearly words\n");
	while (pre->len < n)
		g_string_append(pre, "filler filler filler filler\n");
	s = (struct src){ pre->str, pre->len, 0, 0, 0, 0 };
	CHECK_INT(extract_stream(src_read, &s, NULL, &t), 0);
	CHECK(strstr(t.note, "a multipart without delimiters over 1 MiB not read") != NULL);
	CHECK(strstr(t.body, "early words") == NULL);
	extract_text_free(&t);
	CHECK_INT(extract_message(pre->str, pre->len, NULL, &t), 0);
	CHECK(strncmp(t.body, "early words", 11) == 0);
	CHECK_STR(t.note, "");
	extract_text_free(&t);
	g_string_free(hb, TRUE);
	g_string_free(pre, TRUE);
}

int
main(void)
{
	RUN(test_big_message);		/* first: see there */
	RUN(test_read_error);
	RUN(test_held);
	RUN(test_same_as_memory);
	mime_shutdown();
	DONE();
}
