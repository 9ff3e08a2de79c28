#ifndef EMAILVAULT_IMAP_UTF7_H
#define EMAILVAULT_IMAP_UTF7_H
/*
 * Modified UTF-7 mailbox names (RFC 3501 section 5.1.3), to and from
 * UTF-8. Both directions are strict, so a name has one spelling: input
 * that a conforming encoder would not produce is rejected.
 *
 * Output goes to a caller buffer of cap bytes and is NUL-terminated;
 * *outlen gets its length without the NUL.
 */
#include <stddef.h>

#define IMAP_UTF7_EINVAL	(-1)	/* malformed input */
#define IMAP_UTF7_ESPACE	(-2)	/* cap too small */

/* Room always enough for the result of: */
#define IMAP_UTF7_DECODED_MAX(len)	((len) + 1)
#define IMAP_UTF7_ENCODED_MAX(len)	((len) * 5 + 1)

/* mUTF-7 -> UTF-8. */
int imap_utf7_decode(const char *in, size_t len, char *out, size_t cap,
    size_t *outlen);
/* UTF-8 -> mUTF-7; rejects invalid UTF-8 and U+0000. */
int imap_utf7_encode(const char *in, size_t len, char *out, size_t cap,
    size_t *outlen);
/* A mailbox name that is neither mUTF-7 nor UTF-8 (raw Latin-1 from an old
 * server), shown without loss: each byte that is not part of valid UTF-8,
 * and each control character, as \xHH, and '\' as \\. The result is
 * valid UTF-8 and different for different inputs. */
#define IMAP_NAME_ESCAPED_MAX(len)	((len) * 4 + 1)
int imap_name_escape(const char *in, size_t len, char *out, size_t cap, size_t *outlen);
/* 1 if s is valid UTF-8 without U+0000 (shared with format.c). */
int imap_utf8_valid(const char *s, size_t len);

#endif
