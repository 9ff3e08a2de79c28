#ifndef EMAILVAULT_IMAP_FORMAT_H
#define EMAILVAULT_IMAP_FORMAT_H
/*
 * Pure helpers to build IMAP command arguments. Output goes to a caller
 * buffer of cap bytes, always NUL-terminated when cap > 0; *outlen gets
 * the length without the NUL.
 */
#include <stddef.h>
#include <stdint.h>

#define IMAP_FMT_EINVAL		(-1)	/* bad input */
#define IMAP_FMT_ESPACE		(-2)	/* cap too small / too many ranges */
#define IMAP_FMT_NEEDLIT	(-3)	/* only a literal can carry it */

/* flags */
#define IMAP_FMT_UTF8	0x01	/* UTF8=ACCEPT on: UTF-8 may be quoted */
#define IMAP_FMT_STRING	0x02	/* a string, not an astring: no atom */

enum imap_str_form {
	IMAP_FORM_ATOM,		/* send as is */
	IMAP_FORM_QUOTED,	/* "..." with \" and \\ */
	IMAP_FORM_LITERAL	/* {n} and the raw bytes: CR, LF, NUL or
				 * 8-bit. RFC 3501 literals cannot hold NUL;
				 * servers may refuse it. */
};

enum imap_str_form imap_str_form(const char *s, size_t len, int flags);

/* s as an atom or a quoted string; IMAP_FMT_NEEDLIT if it needs a
 * literal: then send imap_format_literal() and the bytes. */
int imap_format_astring(char *buf, size_t cap, const char *s, size_t len,
    int flags, size_t *outlen);
/* "{len}", "{len+}" (non-synchronizing) or "~{len}" (literal8). */
int imap_format_literal(char *buf, size_t cap, uint64_t len, int nonsync,
    int literal8, size_t *outlen);

/* A UTF-8 mailbox name as a command argument: modified UTF-7 (or UTF-8
 * itself with IMAP_FMT_UTF8), then an atom or a quoted string.
 * IMAP_FMT_EINVAL for invalid UTF-8. */
int imap_format_mailbox(char *buf, size_t cap, const char *utf8, size_t len,
    int flags, size_t *outlen);

/*
 * UIDs (ascending; repeats allowed; no 0) as a set with runs compressed:
 * 1:5,7,9:12. Writes as many whole ranges as fit in cap - 1 bytes, so
 * cap bounds the command length; *used tells how many of the n UIDs are
 * in it: call again with uids + *used for the rest. A range always fits
 * when cap >= 22.
 */
int imap_format_uidset(char *buf, size_t cap, const uint32_t *uids, size_t n,
    size_t *used, size_t *outlen);

struct imap_range {
	uint32_t lo, hi;	/* lo <= hi */
};

/* Parse a sequence-set ("1:3,5,7:*", also ESEARCH ALL) into at most max
 * ranges; '*' stands for star (the largest UID or message number; must be
 * nonzero to be used). 0 is not a valid number. */
int imap_parse_seqset(const char *s, size_t len, uint32_t star,
    struct imap_range *out, size_t max, size_t *n);
/* Numbers covered by the ranges (overlaps counted twice). */
uint64_t imap_ranges_count(const struct imap_range *r, size_t n);

/* An INTERNALDATE ("17-Jul-1996 02:44:25 -0700") as seconds since the
 * epoch in *OUT: 0, or -1 if it is not one. */
int imap_parse_internaldate(const char *s, int64_t *out);

#endif
