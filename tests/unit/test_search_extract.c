/*
 * Text extraction for the search index: the fixtures of tests/fixtures/mail
 * (each puts a unique word in one place; words.tsv says where, and the
 * word must come out of that field and of no other), the limits (parts,
 * depth, text, PDF size and time, memory), truncated input, threads, and
 * a sweep of the real-world corpus when it is present.
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "check.h"
#include "mailfiles.h"
#include "mime/headers.h"
#include "search/extract.h"
#include "search/pdf.h"

#define NFIELDS 7
static const char *const field_names[NFIELDS] = {
	"subject", "from", "to", "cc", "body", "filenames", "attachments"
};

static const char *
field(const struct extract_text *t, int i)
{
	const char *v[NFIELDS] = { t->subject, t->from, t->to, t->cc, t->body,
	    t->filenames, t->attachments };

	return v[i];
}

/* What extract_message promises of every string. */
static int
clean(const char *s)
{
	if (s == NULL || !g_utf8_validate(s, -1, NULL))
		return 0;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c < 0x20 && c != '\n') || c == 0x7f)
			return 0;
		if (c == 0xc2 && (unsigned char)s[1] >= 0x80 &&
		    (unsigned char)s[1] < 0xa0)
			return 0;	/* C1 */
	}
	return 1;
}

static size_t
total(const struct extract_text *t)
{
	size_t n = 0;
	int i;

	for (i = 0; i < NFIELDS; i++)
		n += strlen(field(t, i));
	return n;
}

static int
all_clean(const struct extract_text *t, size_t max_text)
{
	int i;

	for (i = 0; i < NFIELDS; i++)
		if (!clean(field(t, i)))
			return 0;
	return total(t) <= max_text && strlen(t->note) < sizeof t->note &&
	    (t->truncated || t->note[0] == '\0');
}

static char *
mail(const char *name, size_t *len)
{
	char path[4096], *buf;

	snprintf(path, sizeof path, "%s/mail/%s", fixtures(), name);
	if ((buf = slurp(path, len)) == NULL) {
		fprintf(stderr, "cannot read %s\n", path);
		CHECK(!"fixture missing");
	}
	return buf;
}

static void
extract(const char *data, size_t len, const struct extract_limits *lim,
    struct extract_text *t)
{
	CHECK(extract_message(data, len, lim, t) == 0);
	CHECK(all_clean(t, lim ? lim->max_text : 4 * 1024 * 1024));
}

static void
extract_file(const char *name, const struct extract_limits *lim,
    struct extract_text *t)
{
	size_t len = 0;
	char *buf = mail(name, &len);

	extract(buf ? buf : "", len, lim, t);
	free(buf);	/* the text must not point into the message */
}

/* ---- pdftotext absent: names only ----------------------------------------- */

/*
 * Runs first: pdftotext is looked up on PATH once per process, so the
 * child process, with PATH pointing nowhere, must be the first to ask.
 */
static void
test_pdf_absent(void)
{
	struct extract_text t;
	pid_t pid;
	int st = 0;

	if ((pid = fork()) == 0) {
		setenv("PATH", "/nonexistent", 1);
		if (extract_message("", 0, NULL, &t) != 0)
			_exit(2);
		extract_text_free(&t);
		check_failures = 0;
		extract_file("pdf-attachment.eml", NULL, &t);
		CHECK(pdf_tool() == NULL);
		CHECK(strstr(t.filenames, "report.pdf") != NULL);
		CHECK_STR(t.attachments, "");
		CHECK_STR(t.note, "");		/* nothing was cut */
		CHECK_INT(t.truncated, 0);
		CHECK_INT(t.attachment_count, 2);
		extract_text_free(&t);
		_exit(check_failures ? 1 : 0);
	}
	CHECK(pid > 0);
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- the words of the fixtures ----------------------------------------------- */

static void
test_words(void)
{
	char path[4096], line[1024], *cols[4], *p, last[sizeof line] = "";
	struct extract_text t;
	int have = 0, i, rows = 0, skipped = 0, f;
	FILE *fp;

	memset(&t, 0, sizeof t);
	snprintf(path, sizeof path, "%s/mail/words.tsv", fixtures());
	if ((fp = fopen(path, "r")) == NULL) {
		CHECK(!"words.tsv missing");
		return;
	}
	while (fgets(line, sizeof line, fp) != NULL) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		line[strcspn(line, "\n")] = '\0';
		for (i = 0, p = line; i < 4; i++) {
			cols[i] = p;
			p += strcspn(p, "\t");
			if (*p == '\t')
				*p++ = '\0';
		}
		if (strcmp(cols[3], "pdftotext") == 0 && pdf_tool() == NULL) {
			skipped++;
			continue;
		}
		if (!have || strcmp(last, cols[0]) != 0) {
			if (have)
				extract_text_free(&t);
			extract_file(cols[0], NULL, &t);
			snprintf(last, sizeof last, "%s", cols[0]);
			have = 1;
		}
		rows++;
		for (f = 0; f < NFIELDS; f++) {
			int want = strcmp(cols[1], field_names[f]) == 0;
			int got = strstr(field(&t, f), cols[2]) != NULL;

			if (want != got)
				fprintf(stderr, "%s: \"%s\" %s %s (%s: \"%s\")\n",
				    cols[0], cols[2], want ? "missing from" :
				    "found in", field_names[f], field_names[f],
				    field(&t, f));
			CHECK(want == got);
		}
		CHECK(strcmp(cols[1], "none") == 0 ||
		    strcmp(cols[1], "subject") == 0 ||
		    strcmp(cols[1], "from") == 0 || strcmp(cols[1], "to") == 0 ||
		    strcmp(cols[1], "cc") == 0 || strcmp(cols[1], "body") == 0 ||
		    strcmp(cols[1], "filenames") == 0 ||
		    strcmp(cols[1], "attachments") == 0);
	}
	if (have)
		extract_text_free(&t);
	fclose(fp);
	CHECK(rows > 80);
	if (skipped)
		printf("SKIP %d PDF words: pdftotext not installed\n", skipped);
}

/* Fields, counts and notes of a few fixtures, exactly. */
static void
test_fields(void)
{
	struct extract_text t;

	extract_file("forwarded.eml", NULL, &t);
	CHECK_STR(t.subject, "Fwd: something");
	CHECK_STR(t.from, "Fixture Sender <sender@example.org>");
	CHECK_STR(t.to, "Fixture Reader <reader@example.org>");
	CHECK_STR(t.cc, "");
	CHECK_STR(t.filenames, "innerarchive.zip");
	CHECK_INT(t.attachment_count, 2);	/* the message and the zip */
	CHECK_INT(t.truncated, 0);
	CHECK_STR(t.note, "");
	extract_text_free(&t);

	extract_file("rfc2231-name.eml", NULL, &t);
	CHECK_STR(t.filenames, "\xe6\x97\xa5\xe6\x9c\xac rfc2231continuation"
	    "\xc3\xa9word.bin\nencodedattachname \xe2\x82\xac.dat\n"
	    "gr\xc3\xb6\xc3\x9f" "e latinnameword.bin");
	CHECK_INT(t.attachment_count, 3);
	CHECK_STR(t.body, "See the attachments.");
	extract_text_free(&t);

	extract_file("alternative-nested.eml", NULL, &t);
	CHECK_INT(t.attachment_count, 0);	/* an image of the HTML */
	extract_text_free(&t);

	extract_file("utf8-raw-headers.eml", NULL, &t);
	CHECK_STR(t.to, "reader@example.org\nHidden Copy <bccheaderword@example.org>");
	extract_text_free(&t);

	extract_file("html.eml", NULL, &t);
	CHECK_STR(t.body, "Page titleword\n\nVisible htmlonlyword and "
	    "caf\xc3\xa9teria & more\n\nNumeric \xe4\xb8\xad\xe6\x96\x87 refs "
	    "and \xe2\x82\xac" "5 &unknownentity; here\n\ninlinebold joins\n\n"
	    "next<tag> after");
	extract_text_free(&t);

	CHECK(extract_message(NULL, 0, NULL, &t) == 0);
	CHECK(all_clean(&t, 0));
	extract_text_free(&t);
	extract_text_free(&t);		/* twice is harmless */
}

/* ---- limits -------------------------------------------------------------------- */

static GString *
head(const char *ct)
{
	GString *s = g_string_new("From: a@example.org\nSubject: limits\n");

	g_string_append_printf(s, "Content-Type: %s\n\n", ct);
	return s;
}

static void
test_many_parts(void)
{
	GString *s = head("multipart/mixed; boundary=\"b\"");
	struct extract_text t;
	int i;

	for (i = 0; i < 2000; i++)
		g_string_append_printf(s, "--b\nContent-Type: text/plain\n\n"
		    "partword%04d\n", i);
	g_string_append(s, "--b--\n");
	extract(s->str, s->len, NULL, &t);
	CHECK(strstr(t.body, "partword0000") != NULL);
	CHECK(strstr(t.body, "partword0498") != NULL);	/* 1 + 499 parts */
	CHECK(strstr(t.body, "partword0499") == NULL);
	CHECK(strstr(t.body, "partword1999") == NULL);
	CHECK_INT(t.truncated, 1);
	CHECK_STR(t.note, "only the first 500 parts read");
	extract_text_free(&t);

	/* exactly at the limit: nothing was left out */
	g_string_free(s, TRUE);
	s = head("multipart/mixed; boundary=\"b\"");
	for (i = 0; i < 499; i++)
		g_string_append_printf(s, "--b\n\npartword%04d\n", i);
	g_string_append(s, "--b--\n");
	extract(s->str, s->len, NULL, &t);
	CHECK(strstr(t.body, "partword0498") != NULL);
	CHECK_INT(t.truncated, 0);
	CHECK_STR(t.note, "");
	extract_text_free(&t);
	g_string_free(s, TRUE);
}

static void
test_deep(void)
{
	GString *s = g_string_new("Subject: deep\n");
	struct extract_text t;
	int i, n;

	/* multiparts 100 deep, a word at each level */
	for (i = 0; i < 100; i++)
		g_string_append_printf(s, "Content-Type: multipart/mixed; "
		    "boundary=\"b%d\"\n\n--b%d\nContent-Type: text/plain\n\n"
		    "levelword%03d\n--b%d\n", i, i, i, i);
	g_string_append(s, "Content-Type: text/plain\n\nbottomword\n");
	for (i = 99; i >= 0; i--)
		g_string_append_printf(s, "--b%d--\n", i);
	extract(s->str, s->len, NULL, &t);
	CHECK(strstr(t.body, "levelword000") != NULL);
	CHECK(strstr(t.body, "levelword014") != NULL);	/* parts at depth 15 */
	CHECK(strstr(t.body, "levelword016") == NULL);
	CHECK(strstr(t.body, "bottomword") == NULL);
	CHECK_INT(t.truncated, 1);
	CHECK_STR(t.note, "parts nested deeper than 16 levels not read");
	extract_text_free(&t);
	g_string_free(s, TRUE);

	/* attached messages 100 deep, each with its subject */
	s = g_string_new("");
	for (i = 0; i < 100; i++)
		g_string_append_printf(s, "Subject: subjectword%03d\n"
		    "Content-Type: message/rfc822\n\n", i);
	g_string_append(s, "Subject: innermost\n\nbottomword\n");
	extract(s->str, s->len, NULL, &t);
	CHECK_STR(t.subject, "subjectword000");
	CHECK(strstr(t.body, "subjectword016") != NULL);
	CHECK(strstr(t.body, "subjectword017") == NULL);
	CHECK(strstr(t.body, "bottomword") == NULL);
	CHECK_INT(t.attachment_count, 17);	/* the 17th is seen, not read */
	CHECK_INT(t.truncated, 1);
	extract_text_free(&t);
	g_string_free(s, TRUE);

	/* 200,000 levels in 6 MB: bounded, no stack overflow */
	s = g_string_new("");
	for (i = 0; i < 200000; i++)
		g_string_append(s, "Content-Type: message/rfc822\n\n");
	n = (int)s->len;
	extract(s->str, (size_t)n, NULL, &t);
	CHECK_INT(t.truncated, 1);
	extract_text_free(&t);
	g_string_free(s, TRUE);
}

static void
test_text_cap(void)
{
	struct extract_limits lim;
	struct extract_text t;
	GString *s = head("text/plain; charset=utf-8");
	size_t i;

	for (i = 0; i < 10 * 1024 * 1024 / 8; i++)
		g_string_append(s, "\xe4\xb8\xad word ");
	extract(s->str, s->len, NULL, &t);
	CHECK(total(&t) <= 4 * 1024 * 1024);
	CHECK(total(&t) > 4 * 1024 * 1024 - 16);
	CHECK_INT(t.truncated, 1);
	CHECK_STR(t.note, "text cut at 4 MiB");
	extract_text_free(&t);

	/* a tiny budget: headers first, cut on a character boundary */
	extract_limits_default(&lim);
	lim.max_text = 22;
	extract(s->str, s->len, &lim, &t);
	CHECK_STR(t.subject, "limits");
	CHECK_STR(t.from, "a@example.org");
	CHECK_STR(t.body, "\xe4\xb8\xad");	/* 6 + 13 + 3, then " word" */
	CHECK_STR(t.note, "text cut at 22 bytes");
	extract_text_free(&t);
	g_string_free(s, TRUE);
}

static long
max_rss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/*
 * A 100 MB base64 attachment that is not text is not decoded: the peak
 * resident size grows by far less than its 75 MB of content.
 */
static void
test_big_attachment(void)
{
	GString *s = head("multipart/mixed; boundary=\"b\"");
	struct extract_text t;
	long before;
	size_t i;

	g_string_append(s, "--b\nContent-Type: text/plain\n\nbefore\n--b\n"
	    "Content-Type: application/octet-stream; name=\"big.bin\"\n"
	    "Content-Transfer-Encoding: base64\n\n");
	for (i = 0; i < 100 * 1000 * 1000 / 77; i++)
		g_string_append(s, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlq"
		    "a2xtbm9wcXJzdHV2d3h5ejAxMjM0\n");
	g_string_append(s, "--b\nContent-Type: text/plain\n\nafterword\n--b--\n");
	before = max_rss_kb();
	extract(s->str, s->len, NULL, &t);
	CHECK(max_rss_kb() - before < 16 * 1024);
	CHECK_STR(t.body, "before\n\nafterword");
	CHECK_STR(t.filenames, "big.bin");
	CHECK_INT(t.attachment_count, 1);
	extract_text_free(&t);
	g_string_free(s, TRUE);
}

/* ---- PDF --------------------------------------------------------------------------- */

static int
no_children(void)
{
	return waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD;
}

static void
test_pdf(void)
{
	struct extract_limits lim;
	struct extract_text t;

	if (pdf_tool() == NULL) {
		printf("SKIP PDF tests: pdftotext not installed\n");
		return;
	}
	extract_file("pdf-attachment.eml", NULL, &t);
	CHECK(strstr(t.attachments, "pdfonlyword") != NULL);
	CHECK_STR(t.note, "");
	extract_text_free(&t);
	CHECK(no_children());

	extract_limits_default(&lim);
	lim.pdf = 0;			/* off: names only */
	extract_file("pdf-attachment.eml", &lim, &t);
	CHECK_STR(t.attachments, "");
	CHECK(strstr(t.filenames, "report.pdf") != NULL);
	extract_text_free(&t);

	lim.pdf = 1;			/* too big: name only, said so */
	lim.pdf_max = 100;
	extract_file("pdf-attachment.eml", &lim, &t);
	CHECK_STR(t.attachments, "");
	CHECK_INT(t.truncated, 1);
	CHECK_STR(t.note, "PDF over 100 bytes not read");
	extract_text_free(&t);

	/* too big, and no object in its first 256 KiB either: still said */
	{
		GString *m = g_string_new("Content-Type: multipart/mixed; boundary=b\n\n--b\n"
		    "Content-Type: application/pdf\n\n");

		while (m->len < 300 * 1024)
			g_string_append(m, "%PDF-1.4 filler without objects\n");
		g_string_append(m, "--b--\n");
		lim.pdf_max = 200 * 1024;
		extract(m->str, m->len, &lim, &t);
		CHECK_STR(t.note, "PDF over 200 KiB not read");
		extract_text_free(&t);
		g_string_free(m, TRUE);
		CHECK(no_children());
	}

	lim.pdf_max = 1 << 20;		/* no time: killed, reaped */
	lim.pdf_seconds = 0.0001;
	extract_file("pdf-attachment.eml", &lim, &t);
	CHECK(strstr(t.attachments, "pdfonlyword") == NULL);
	CHECK_INT(t.truncated, 1);
	CHECK_STR(t.note, "PDF text cut after 0.0001 s");
	extract_text_free(&t);
	CHECK(no_children());

	/* the output read is capped at the budget left */
	lim.pdf_seconds = 10;
	lim.pdf = 0;
	extract_file("pdf-attachment.eml", &lim, &t);
	lim.max_text = total(&t) + 12;
	extract_text_free(&t);
	lim.pdf = 1;
	extract_file("pdf-attachment.eml", &lim, &t);
	CHECK(strncmp(t.attachments, "Quarterly ", 9) == 0);
	CHECK(strlen(t.attachments) < strlen("Quarterly pdfonlyword figures"));
	CHECK(total(&t) <= lim.max_text);
	CHECK_INT(t.truncated, 1);
	CHECK(strncmp(t.note, "text cut at ", 12) == 0);
	extract_text_free(&t);
	CHECK(no_children());
}

/* Not a PDF at all, and a PDF cut in half: no text, no crash, no zombie. */
static void
test_pdf_broken(void)
{
	static const char *msg =
	    "Content-Type: application/pdf; name=\"x.pdf\"\n\n%PDF-1.4 garbage\n";
	struct extract_text t;
	size_t len;
	char *buf;

	if (pdf_tool() == NULL)
		return;
	extract(msg, strlen(msg), NULL, &t);
	CHECK_STR(t.filenames, "x.pdf");
	CHECK_INT(t.attachment_count, 1);
	extract_text_free(&t);
	if ((buf = mail("pdf-attachment.eml", &len)) != NULL) {
		extract(buf, len * 2 / 3, NULL, &t);
		extract_text_free(&t);
		free(buf);
	}
	CHECK(no_children());
}

/* ---- truncated input ---------------------------------------------------------- */

static const char *const names[] = {
	"alternative-nested.eml", "base64-body.eml", "big5.eml", "euc-kr.eml",
	"ew-gbk-subject.eml", "ew-latin1-cp1252.eml", "forwarded.eml",
	"gb2312-gbk.eml", "html-meta-charset.eml", "html.eml",
	"iso-2022-jp.eml", "iso-8859-7.eml", "koi8-r.eml", "latin1-cp1252.eml",
	"malformed-bare-cr.eml", "malformed-garbage.eml",
	"malformed-no-boundary.eml", "malformed-no-close.eml",
	"malformed-no-separator.eml", "no-charset-8bit.eml",
	"pdf-attachment.eml", "qp-body.eml", "rfc2231-name.eml",
	"shift_jis.eml", "text-attachment.eml", "utf16-bom.eml",
	"utf8-raw-headers.eml", "uuencode.eml", "malformed-space-line.eml",
	"malformed-close-only.eml", "boundary-prefix.eml", NULL
};

/* Every prefix of every fixture (copied, so a read past it is caught). */
static void
test_prefixes(void)
{
	struct extract_limits lim;
	struct extract_text t;
	size_t len, n;
	char *buf, *cut;
	int i;

	extract_limits_default(&lim);
	lim.pdf = 0;
	for (i = 0; names[i] != NULL; i++) {
		if ((buf = mail(names[i], &len)) == NULL)
			continue;
		for (n = 0; n <= len; n++) {
			cut = malloc(n + 1);
			memcpy(cut, buf, n);
			if (extract_message(cut, n, &lim, &t) != 0 ||
			    !all_clean(&t, lim.max_text)) {
				fprintf(stderr, "%s cut at %zu\n", names[i], n);
				CHECK(!"prefix");
			}
			extract_text_free(&t);
			free(cut);
		}
		free(buf);
	}
}

/* ---- threads ---------------------------------------------------------------------- */

struct job {
	const char *const *names;
	char *expect[64];
	int id;
	int bad;
};

/* A charset name nobody used before: the header decoder's table grows. */
static int
new_charset(int id, int r)
{
	struct extract_text t;
	char msg[128];
	int ok;

	snprintf(msg, sizeof msg, "Subject: =?x-thread%d-%d?q?fresh?=\n\nx\n",
	    id, r);
	if (extract_message(msg, strlen(msg), NULL, &t) != 0)
		return 0;
	ok = strcmp(t.subject, "fresh") == 0;
	extract_text_free(&t);
	return ok;
}

static char *
flat(const struct extract_text *t)
{
	return g_strdup_printf("%s|%s|%s|%s|%s|%s|%s|%d|%d|%s", t->subject,
	    t->from, t->to, t->cc, t->body, t->filenames, t->attachments,
	    t->attachment_count, t->truncated, t->note);
}

static void *
worker(void *ud)
{
	struct job *j = ud;
	struct extract_limits lim;
	struct extract_text t;
	size_t len;
	char *buf, *got;
	int r, i;

	extract_limits_default(&lim);
	lim.pdf = 0;
	for (r = 0; r < 20; r++) {
		j->bad += !new_charset(j->id, r);
		for (i = 0; j->names[i] != NULL; i++) {
			if ((buf = mail(j->names[i], &len)) == NULL)
				continue;
			if (extract_message(buf, len, &lim, &t) != 0) {
				j->bad++;
				free(buf);
				continue;
			}
			got = flat(&t);
			j->bad += strcmp(got, j->expect[i]) != 0;
			g_free(got);
			extract_text_free(&t);
			free(buf);
		}
	}
	return NULL;
}

/*
 * Two extracting threads and the main thread parsing headers, all with
 * GMime at once (as the indexer thread and the engine will): each result
 * must equal the one of a lone thread. Each also brings charset names the
 * header decoder has not seen, so its table grows under all three. Runs
 * last: those names take places in that (bounded) table. Under TSan (with
 * G_SLICE=always-malloc) this shows the table's lock is needed.
 */
static void
test_threads(void)
{
	struct extract_limits lim;
	struct extract_text t;
	struct job j[2];
	pthread_t th[2];
	size_t len;
	char *buf;
	int i, k, r;

	extract_limits_default(&lim);
	lim.pdf = 0;
	memset(j, 0, sizeof j);
	for (i = 0; names[i] != NULL; i++) {
		buf = mail(names[i], &len);
		CHECK(extract_message(buf ? buf : "", buf ? len : 0, &lim, &t) == 0);
		j[0].expect[i] = flat(&t);
		j[1].expect[i] = g_strdup(j[0].expect[i]);
		extract_text_free(&t);
		free(buf);
	}
	for (k = 0; k < 2; k++) {
		j[k].names = names;
		j[k].id = k;
		CHECK(pthread_create(&th[k], NULL, worker, &j[k]) == 0);
	}
	for (r = 0; r < 20; r++) {
		CHECK(new_charset(2, r));
		for (i = 0; names[i] != NULL; i++) {
			struct mime_headers *h;

			if ((buf = mail(names[i], &len)) == NULL)
				continue;
			h = mime_headers_parse(buf, len);
			CHECK(h != NULL);
			mime_headers_free(h);
			free(buf);
		}
	}
	for (k = 0; k < 2; k++) {
		pthread_join(th[k], NULL);
		CHECK_INT(j[k].bad, 0);
		for (i = 0; names[i] != NULL; i++)
			g_free(j[k].expect[i]);
	}
}

/* ---- the real-world corpus ------------------------------------------------------ */

/* Known words of known files: CJK, Cyrillic, Greek, Arabic, in bodies,
 * headers and names, in legacy charsets and mislabelled ones. */
static const struct {
	const char *file;
	int field;		/* index in field_names */
	const char *word;
} spots[] = {
	{ "mozilla-releases-comm-central/mailnews/test/data/11-plaintext-greek.eml",
	    4, "\xce\x9a\xce\xb1\xce\xbb\xce\xb7\xcf\x83\xcf\x80\xce\xad\xcf\x81\xce\xb1" },
	{ "mozilla-releases-comm-central/mailnews/test/data/22-plaintext+attachment.eml",
	    4, "\xce\x9a\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1" },
	{ "mikel-mail/multi_charset/japanese_shift_jis.eml", 4,
	    "\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88\xe7\x94\xa8" },	/* テスト用 */
	{ "mikel-mail/multi_charset/ks_c_5601-1987.eml", 4,
	    "\xec\x8a\xa4\xed\x8b\xb0\xed\x95\xb4" },			/* 스티해 */
	{ "jstedfast-MimeKit/tnef/ukr.eml", 4,
	    "\xd1\x88\xd0\xbe\xd1\x81\xd1\x82\xd0\xb8\xd0\xb9" },	/* шостий */
	{ "apache-spamassassin/nice/cjk/gb2312.1.eml", 4,		/* 鑫龙商贸 */
	    "\xe9\x91\xab\xe9\xbe\x99\xe5\x95\x86\xe8\xb4\xb8" },
	{ "apache-spamassassin/nice/cjk/gb2312.1.eml", 0,		/* raw GB2312 */
	    "\xe9\x80\x81\xe8\xb4\xa7\xe4\xb8\x8a\xe9\x97\xa8" },	/* 送货上门 */
	{ "apache-spamassassin/nice/cjk/big5-base64.1.eml", 4,
	    "\xe9\x89\x85\xe9\x9d\xa1\xe7\xb6\xb2\xe7\xab\x99" },	/* 鉅靡網站 */
	{ "Kopano-dev-kopano-core/big5.eml", 0,			/* raw Big5 */
	    "\xe9\xa4\x8a\xe6\xa8\x82\xe5\xa4\x9a" },			/* 養樂多 */
	{ "Kopano-dev-kopano-core/zcp-11713.eml", 0,			/* 開封 */
	    "\xe9\x96\x8b\xe5\xb0\x81" },
	{ "Kopano-dev-kopano-core/zcp-11713.eml", 4,			/* Shift_JIS */
	    "\xe9\x96\x8b\xe5\xb0\x81 : BB.local domain" },		/* as ISO-2022-JP */
	{ "mozilla-releases-comm-central/mailnews/mime/jsmime/test/unit/data/charsets.eml",
	    4, "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf" },
	{ "mozilla-releases-comm-central/mailnews/mime/jsmime/test/unit/data/charsets.eml",
	    4, "\xec\x95\x88\xeb\x85\x95\xed\x95\x98\xec\x84\xb8\xec\x9a\x94" },
	{ "mozilla-releases-comm-central/mailnews/mime/jsmime/test/unit/data/charsets.eml",
	    4, "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c" },	/* 你好世界 */
	{ "mozilla-releases-comm-central/mailnews/mime/jsmime/test/unit/data/charsets.eml",
	    4, "\xd8\xa3\xd9\x87\xd9\x84\xd8\xa7" },			/* أهلا */
	{ "mozilla-releases-comm-central/mail/components/extensions/test/xpcshell/messages/sample04.eml",
	    0, "\xd0\x90\xd0\xbb\xd1\x84\xd0\xb0\xd0\xb2\xd0\xb8\xd1\x82" },
	{ "mozilla-releases-comm-central/mail/components/extensions/test/xpcshell/messages/sample04.eml",
	    4, "\xd0\x92\xd0\xbe\xd0\xbf\xd1\x80\xd0\xbe\xd1\x81" },	/* Вопрос */
	{ "php-mime-mail-parser-php-mime-mail-parser/m0018.eml", 5,
	    "\xec\x82\xac\xec\xa7\x84.JPG" },				/* 사진.JPG */
	{ "RustPython-RustPython/msg_29.txt.eml", 4, "Do you like this message?" },
};

static void
test_corpus(void)
{
	struct extract_limits lim;
	struct extract_text t;
	char path[4096];
	size_t i, k, r, bytes = 0, bad = 0, with_body = 0;
	struct timespec a, b;
	double secs;

	if (!find_corpus()) {
		printf("SKIP corpus sweep: %s not found\n", corpus);
		return;
	}
	load_dir(corpus);
	CHECK(nmsgs > 100);
	for (i = 0; i < nmsgs; i++) {
		if (extract_message(msgs[i].data, msgs[i].len, NULL, &t) != 0 ||
		    !all_clean(&t, 4 * 1024 * 1024) ||
		    total(&t) > 2 * msgs[i].len + 1024) {
			fprintf(stderr, "corpus: bad result for %s\n", msgs[i].path);
			bad++;
		}
		with_body += t.body[0] != '\0' || t.attachments[0] != '\0';
		extract_text_free(&t);
	}
	CHECK_INT(bad, 0);
	printf("corpus: text found in %zu of %zu messages\n", with_body, nmsgs);
	CHECK(with_body > nmsgs * 17 / 20);	/* the rest: encrypted, images */
	CHECK(no_children());

	for (k = 0; k < sizeof spots / sizeof spots[0]; k++) {
		snprintf(path, sizeof path, "%s/%s", corpus, spots[k].file);
		for (i = 0; i < nmsgs && strcmp(msgs[i].path, path) != 0; i++)
			;
		if (i == nmsgs) {
			fprintf(stderr, "corpus file missing: %s\n", spots[k].file);
			CHECK(!"corpus file missing");
			continue;
		}
		CHECK(extract_message(msgs[i].data, msgs[i].len, NULL, &t) == 0);
		if (strstr(field(&t, spots[k].field), spots[k].word) == NULL) {
			fprintf(stderr, "%s: \"%s\" not in %s: \"%s\"\n",
			    spots[k].file, spots[k].word,
			    field_names[spots[k].field], field(&t, spots[k].field));
			CHECK(!"spot check");
		}
		extract_text_free(&t);
	}

	/* the rate, without pdftotext (its start-up would dominate) */
	extract_limits_default(&lim);
	lim.pdf = 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (r = 0; r < 10; r++)
		for (i = 0; i < nmsgs; i++) {
			CHECK(extract_message(msgs[i].data, msgs[i].len, &lim,
			    &t) == 0);
			extract_text_free(&t);
			bytes += msgs[i].len;
		}
	clock_gettime(CLOCK_MONOTONIC, &b);
	secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	printf("corpus: %zu messages x 10 in %.3f s: %.0f messages/s, "
	    "%.1f MB/s\n", nmsgs, secs, 10.0 * (double)nmsgs / secs,
	    (double)bytes / secs / 1e6);

	for (i = 0; i < nmsgs; i++) {
		free(msgs[i].path);
		free(msgs[i].data);
	}
	free(msgs);
}

int
main(void)
{
	RUN(test_pdf_absent);		/* first: see there */
	RUN(test_words);
	RUN(test_fields);
	RUN(test_many_parts);
	RUN(test_deep);
	RUN(test_text_cap);
	RUN(test_big_attachment);
	RUN(test_pdf);
	RUN(test_pdf_broken);
	RUN(test_prefixes);
	RUN(test_corpus);
	RUN(test_threads);		/* last: see there */
	CHECK(no_children());
	mime_shutdown();
	DONE();
}
