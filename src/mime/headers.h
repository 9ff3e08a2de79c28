#ifndef EMAILVAULT_MIME_HEADERS_H
#define EMAILVAULT_MIME_HEADERS_H
/*
 * Header block decoding for the filter hook and the search index (see
 * docs/mime.md). Only the header block of a raw message is read; the body
 * is never parsed. Every string returned is valid UTF-8 without control
 * characters, owned by the struct mime_headers it came from and valid until
 * mime_headers_free.
 */
#include <stddef.h>
#include <stdint.h>

#define MIME_HEADER_MAX (256 * 1024)	/* bytes of DATA ever looked at */

struct mime_headers;

/*
 * Idempotent and thread-safe: initialises GMime once. mime_headers_parse
 * calls it too. Parsing may then run on several threads at once.
 */
void mime_init(void);
/*
 * Frees GMime's global state, for leak checkers at exit. Final: GMime
 * cannot be initialised again, so nothing here may be used afterwards.
 */
void mime_shutdown(void);

/*
 * Parses the header block at the start of DATA (a raw RFC 5322 message as
 * the server sent it, maybe with the body or only part of it): up to the
 * first empty line, at most MIME_HEADER_MAX bytes. Best effort on malformed
 * input; returns NULL only when out of memory.
 */
struct mime_headers *mime_headers_parse(const char *data, size_t len);
void mime_headers_free(struct mime_headers *h);

/* Decoded UTF-8, "" when absent. */
const char *mime_headers_subject(const struct mime_headers *h);
/* "Alice Example <alice@example.com>, ..." (all To or Cc headers joined) */
const char *mime_headers_from(const struct mime_headers *h);
const char *mime_headers_to(const struct mime_headers *h);
const char *mime_headers_cc(const struct mime_headers *h);
/* The Date header as written (unfolded). */
const char *mime_headers_date(const struct mime_headers *h);
/* Seconds since the epoch, -1 if absent or unparseable. */
int64_t mime_headers_date_unix(const struct mime_headers *h);
/* Without angle brackets. */
const char *mime_headers_message_id(const struct mime_headers *h);
/* Addresses only, lower-cased, comma-separated, for search. */
const char *mime_headers_from_addrs(const struct mime_headers *h);
const char *mime_headers_to_addrs(const struct mime_headers *h);	/* To+Cc+Bcc */

/*
 * First header called NAME (case-insensitive), decoded to UTF-8 and
 * unfolded; NULL when absent. Decoded on first use and kept in h.
 */
const char *mime_headers_get(struct mime_headers *h, const char *name);
/*
 * First header called NAME as written: unfolded, trimmed, NUL bytes made
 * spaces, not decoded (for structured fields such as Content-Type whose
 * parameters the caller parses); NULL when absent.
 */
const char *mime_headers_raw(const struct mime_headers *h, const char *name);

/*
 * LEN bytes of S (an unstructured header value, or a parameter value)
 * decoded as mime_headers_get decodes a value: raw 8-bit bytes (UTF-8, else
 * Windows-1252), RFC 2047 encoded-words, controls made spaces. Returns a
 * g_malloc'd string (free with g_free).
 */
char *mime_decode_text(const char *s, size_t len);

/*
 * All headers called NAME in message order: returns how many there are and
 * stores the first MAX of them in OUT.
 */
size_t mime_headers_get_all(struct mime_headers *h, const char *name,
    const char **out, size_t max);

#endif
