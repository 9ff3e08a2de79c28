#ifndef EMAILVAULT_SEARCH_PDF_H
#define EMAILVAULT_SEARCH_PDF_H
/*
 * The text of a PDF through poppler's pdftotext, in a child process: the
 * PDF is written to its stdin as it is decoded (never held whole), its
 * stdout read under a wall-clock limit and a byte cap, the child killed
 * when either is hit and always reaped. Blocking: call it from a worker
 * thread, never from the event loop.
 */
#include <stddef.h>
#include <sys/types.h>

/* pdf_finish results */
#define PDF_OK		0
#define PDF_FAILED	1	/* no text: could not run, or not a PDF it reads */
#define PDF_TIMEOUT	2	/* the time limit hit (text so far is kept) */
#define PDF_CUT		3	/* MAX_OUT bytes read, the rest dropped */

struct pdf_job {
	pid_t pid;
	int in, out;		/* our ends of its stdin and stdout */
	double deadline;	/* CLOCK_MONOTONIC seconds */
	char *text;		/* malloc, what it printed */
	size_t len, cap, max;
	int timeout, cut, eof, closed_in;
};

/* The pdftotext found on PATH (looked up once), NULL when not installed. */
const char *pdf_tool(void);

/*
 * Starts pdftotext with SECONDS to live, keeping at most MAX_OUT bytes of
 * its output. Returns 0, or -1 when it cannot be started (no tool, out of
 * file descriptors or processes).
 */
int pdf_start(struct pdf_job *j, double seconds, size_t max_out);

/*
 * Hands it N more bytes of the PDF. Returns 0, or -1 once the job is over
 * early (time, output cap, the child stopped reading); then stop writing
 * and call pdf_finish, which still returns what it printed.
 */
int pdf_write(struct pdf_job *j, const char *s, size_t n);

/*
 * Ends the job: closes its stdin, reads the rest under the time limit,
 * kills it if it is still running then, reaps it. *TEXT (malloc, may be
 * NULL when empty) and *LEN get its output. Returns a PDF_* result.
 */
int pdf_finish(struct pdf_job *j, char **text, size_t *len);

/* Ends the job without its text: kills the child and reaps it. */
void pdf_abort(struct pdf_job *j);

#endif
