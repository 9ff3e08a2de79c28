/*
 * The pdftotext child as src/search/pdf.c starts it, seen from inside: a
 * stand-in "pdftotext" (a shell script first on PATH) reads its stdin to
 * the end, then prints its limits, its environment and whether it holds a
 * descriptor of ours. Its own executable, apart from test_search_extract:
 * the tool is looked up on PATH once per process.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "search/body.h"
#include "search/decode.h"
#include "search/pdf.h"

#define LEAK_FD 47	/* a descriptor of ours, not close-on-exec */

static char dir[] = "/tmp/ev-test-pdf-XXXXXX";
static char script[sizeof dir + 16];

static const char *const tool_text =
	"#!/bin/sh\n"
	"cat >/dev/null\n"
	"while read -r name a b c rest; do\n"
	"  case \"$name $a $b\" in\n"
	"  'Max cpu time'|'Max file size'|'Max core file'|'Max address space')\n"
	"    echo \"limit $name $a $b $c\" $rest;;\n"
	"  esac\n"
	"done < /proc/$$/limits\n"
	"echo \"secret=${EMAILVAULT_TEST_SECRET-unset}\"\n"
	"echo \"path=$PATH\"\n"
	"if [ -e /proc/$$/fd/47 ]; then echo fd47=open; else echo fd47=closed; fi\n";

static int
no_children(void)
{
	return waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD;
}

static int
setup(void)
{
	FILE *f;

	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(script, sizeof script, "%s/pdftotext", dir);
	if ((f = fopen(script, "w")) == NULL)
		return -1;
	fputs(tool_text, f);
	if (fclose(f) != 0 || chmod(script, 0700) != 0)
		return -1;
	setenv("PATH", dir, 1);
	setenv("EMAILVAULT_TEST_SECRET", "hunter2", 1);
	return 0;
}

/* What the child printed for a job of SECONDS. */
static char *
run(double seconds, int *result)
{
	struct pdf_job j;
	char *text = NULL;
	size_t len = 0;

	if (pdf_start(&j, seconds, 1 << 20) != 0)
		return NULL;
	CHECK_INT(pdf_write(&j, "%PDF-1.4\n", 9), 0);
	*result = pdf_finish(&j, &text, &len);
	if (text == NULL)
		return NULL;
	char *s = malloc(len + 1);
	if (s != NULL) {
		memcpy(s, text, len);
		s[len] = '\0';
	}
	free(text);
	return s;
}

/* The limits, a fixed environment and three descriptors. */
static void
test_child(void)
{
	int result = -1;
	int fd = open("/dev/null", O_RDONLY);

	CHECK(fd >= 0 && dup2(fd, LEAK_FD) == LEAK_FD);	/* no O_CLOEXEC */
	close(fd);
	CHECK_STR(pdf_tool(), script);
	char *out = run(10, &result);
	CHECK(out != NULL);
	if (out == NULL)
		return;
	CHECK_INT(result, PDF_OK);
	CHECK(strstr(out, "limit Max cpu time 12 12 seconds") != NULL);
	CHECK(strstr(out, "limit Max file size 0 0 bytes") != NULL);
	CHECK(strstr(out, "limit Max core file size 0 0 bytes") != NULL);
	CHECK(strstr(out, "limit Max address space 1073741824 1073741824 bytes") != NULL);
	CHECK(strstr(out, "secret=unset\n") != NULL);
	CHECK(strstr(out, "path=/usr/bin:/bin\n") != NULL);
	CHECK(strstr(out, "fd47=closed\n") != NULL);
	if (check_failures)
		fprintf(stderr, "the child printed:\n%s", out);
	free(out);
	close(LEAK_FD);
	CHECK(no_children());
}

/* A child that cannot run (the file is not executable any more). */
static void
test_cannot_run(void)
{
	struct pdf_job j;
	char *text = NULL;
	size_t len = 0;

	CHECK(chmod(script, 0600) == 0);
	if (pdf_start(&j, 10, 1 << 20) == 0) {
		(void)pdf_write(&j, "%PDF-1.4\n", 9);
		CHECK_INT(pdf_finish(&j, &text, &len), PDF_FAILED);
		free(text);
	}
	CHECK(no_children());
}


/* "obj" found wherever it is, across the decoder's chunks too; random
 * bytes without it start no pdftotext. */
static void
test_objects_looked_for(void)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = 40000;
	char *raw = malloc(n), *enc = malloc(n * 2);
	unsigned x = 12345;

	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		raw[i] = (char)('A' + (x >> 16) % 26);	/* capitals: never "obj" */
	}
	CHECK_INT(body_pdf_has_objects(raw, n, ENC_NONE), 0);
	/* at the start, at the end, and straddling each chunk edge (8192) */
	size_t at[] = { 0, n - 3, 8189, 8190, 8191, 8192, 16382, 16383 };
	for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
		char keep[3];
		memcpy(keep, raw + at[k], 3);
		memcpy(raw + at[k], "obj", 3);
		CHECK_INT(body_pdf_has_objects(raw, n, ENC_NONE), 1);
		/* the same in base64 with line breaks, decoded in chunks */
		size_t e = 0, col = 0;
		for (size_t i = 0; i + 3 <= n; i += 3) {
			unsigned v = (unsigned char)raw[i] << 16 | (unsigned char)raw[i + 1] << 8 |
			    (unsigned char)raw[i + 2];
			enc[e++] = b64[v >> 18 & 63];
			enc[e++] = b64[v >> 12 & 63];
			enc[e++] = b64[v >> 6 & 63];
			enc[e++] = b64[v & 63];
			if ((col += 4) == 76) {
				enc[e++] = '\r';
				enc[e++] = '\n';
				col = 0;
			}
		}
		CHECK_INT(body_pdf_has_objects(enc, e, ENC_BASE64), (at[k] + 3 <= n / 3 * 3));
		memcpy(raw + at[k], keep, 3);
	}
	free(raw);
	free(enc);
}

int
main(void)
{
	if (setup() != 0) {
		fprintf(stderr, "cannot write %s: %s\n", script, strerror(errno));
		return 1;
	}
	RUN(test_child);
	RUN(test_cannot_run);
	RUN(test_objects_looked_for);
	unlink(script);
	rmdir(dir);
	DONE();
}
