#ifndef EMAILVAULT_S3_XML_H
#define EMAILVAULT_S3_XML_H
/*
 * The little of XML that S3 answers need: the text of the first element
 * named NAME, and the elements named NAME one after another (ListObjectsV2's
 * <Contents>). Not a general parser: S3's answers are flat, well-formed
 * documents without attributes that matter, CDATA or entities beyond the
 * five predefined ones and character references. Bounded: one pass, no
 * recursion, no allocation but the caller's buffer.
 */
#include <stddef.h>

/* The text of the first <NAME>...</NAME> in [XML, XML+LEN), entities
 * decoded, NUL-terminated in OUT (cut to OUTLEN-1 bytes). 1 found, 0 not
 * (OUT is ""), -1 when it does not fit. <NAME/> is found and empty. */
int s3_xml_text(const char *xml, size_t len, const char *name, char *out, size_t outlen);

/* The next <NAME>...</NAME> element at or after *POS: its inner bytes in
 * *INNER, *INNER_LEN; *POS moves past it. 1 found, 0 no more. */
int s3_xml_next(const char *xml, size_t len, const char *name, size_t *pos, const char **inner,
    size_t *inner_len);

/* TEXT with & < > " ' escaped, for request bodies: malloc'd. */
char *s3_xml_escape(const char *text);

#endif
