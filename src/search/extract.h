#ifndef EMAILVAULT_SEARCH_EXTRACT_H
#define EMAILVAULT_SEARCH_EXTRACT_H
/*
 * The text of one message for the search index (docs/mime.md, "Text for
 * the index"): a pure function of the raw message bytes, bounded in time
 * and memory on any input, safe to call on a worker thread.
 */
#include <stddef.h>
#include <sys/types.h>

struct extract_limits {
	size_t max_text;	/* bytes of UTF-8 text taken from one message, all fields (default 4 MiB) */
	int max_depth;		/* nesting of multiparts and message/rfc822 (default 16) */
	int max_parts;		/* MIME parts looked at (default 500) */
	int pdf;		/* 1: extract PDF text with pdftotext when it is installed (default 1) */
	double pdf_seconds;	/* wall-clock limit of one pdftotext run (default 10) */
	size_t pdf_max;		/* bytes of one PDF given to pdftotext (default 32 MiB; bigger: name only) */
};

void extract_limits_default(struct extract_limits *l);

struct extract_text {
	char *subject;		/* the message's Subject, decoded, unfolded */
	char *from;		/* From as "Name <addr>" text (Sender when there is no From) */
	char *to, *cc;		/* To, then Bcc lines when present / Cc */
	char *body;		/* text of the body parts: text/plain, text/html as text,
				 * other inline text parts (text/calendar, ...); an
				 * attached message/rfc822 adds its subject, from, to,
				 * cc and body text here */
	char *filenames;	/* attachment names (Content-Disposition filename / Content-Type
				 * name, RFC 2231 and RFC 2047 decoded), one per line */
	char *attachments;	/* text of text attachments (text/plain, text/html, ...) and of PDFs */
	int attachment_count;	/* parts that are attachments (has:attachment uses it) */
	int truncated;		/* a limit was hit */
	char note[256];		/* what was cut, for people: "text cut at 4 MiB", ... ("" if nothing) */
};

/*
 * Extracts the text of the message DATA (LEN bytes, as archived). Every
 * string is non-NULL, valid UTF-8 without NULs or control characters other
 * than \n. Returns 0, or -1 only when out of memory (OUT is then empty and
 * needs no free). LIM may be NULL for the defaults. Thread-safe; a PDF
 * makes it block for up to lim->pdf_seconds.
 */
int extract_message(const char *data, size_t len,
    const struct extract_limits *lim, struct extract_text *out);

/*
 * The same over a message that is read as it is walked: READ gives up to
 * CAP more bytes of it, 0 at its end, -1 with errno. The memory it takes
 * does not grow with the message (see extract.c). Returns 0, or -1 with
 * errno: ENOMEM, or what READ failed with (OUT is then empty).
 */
typedef ssize_t (*extract_read)(void *ud, void *buf, size_t cap);
int extract_stream(extract_read read, void *ud, const struct extract_limits *lim,
    struct extract_text *out);

void extract_text_free(struct extract_text *t);

#endif
