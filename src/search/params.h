#ifndef EMAILVAULT_SEARCH_PARAMS_H
#define EMAILVAULT_SEARCH_PARAMS_H
/*
 * Content-Type and Content-Disposition values: the leading token and the
 * parameters, with RFC 2231 (continuations, charset and language, %XX),
 * RFC 2047 words in quoted values (Outlook, Thunderbird) and raw 8-bit
 * values. Pure functions of the raw (unfolded, undecoded) header value.
 */
#include <stddef.h>

#define PARAM_MAX 4096		/* bytes of one decoded value, at most */

/*
 * The value's leading token ("text/plain", "attachment"), lower case, in
 * BUF (N bytes); "" when it is empty or too long for BUF.
 */
void param_token(const char *value, char *buf, size_t n);

/*
 * Parameter NAME of VALUE, decoded to text (UTF-8 with no guarantee
 * beyond what the index sink mends); NULL when absent. g_malloc'd.
 */
char *param_get(const char *value, const char *name);

/* The same, unquoted but not decoded (a boundary, a charset name). */
char *param_get_raw(const char *value, const char *name);

#endif
