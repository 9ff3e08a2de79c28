#ifndef EMAILVAULT_SEARCH_INDEX_TEXT_H
#define EMAILVAULT_SEARCH_INDEX_TEXT_H
/*
 * The text the full-text index was built from, kept compressed in
 * archive.db (table fts_text, one blob a column) instead of FTS5's own
 * uncompressed copy: three quarters of archive.db was that copy. The index
 * (fts) reads it through the view fts_view, whose columns are
 * ev_text(blob): snippet() and highlight() see the text exactly as it was
 * indexed, and a row is removed from the index with the very tokens it was
 * added with. See docs/search.md.
 *
 * A blob is one byte of codec then the bytes: 'r' raw, 'z' one zstd frame
 * of the UTF-8 text. SQL NULL is the empty text.
 */
#include <stddef.h>

#include <sqlite3.h>

#define INDEX_TEXT_MAX ((size_t)256 << 20)	/* what ev_text() ever inflates a blob to */

struct index_text_packer;

/* One thread's compressor. NULL when out of memory. */
struct index_text_packer *index_text_packer_new(void);
void index_text_packer_free(struct index_text_packer *p);

/*
 * The blob of the N bytes at S into *OUT (malloc'd, the caller frees) and
 * *OUTLEN; *OUT NULL for an empty text. -1 when out of memory.
 */
int index_text_pack(struct index_text_packer *p, const char *s, size_t n,
    unsigned char **out, size_t *outlen);

/*
 * The text of a blob into *OUT (malloc'd, NUL-terminated) and *OUTLEN; -1
 * for a blob that is damaged or would be bigger than INDEX_TEXT_MAX, or
 * out of memory.
 */
int index_text_unpack(const unsigned char *blob, size_t len, char **out, size_t *outlen);

/* ev_text(blob) on DB, for fts_view. A damaged blob is an SQL error,
 * never a wrong text: FTS5 would take the wrong tokens out of the index. */
int index_text_register(sqlite3 *db);

/* Whether ev_text() met a damaged blob on this thread since the last call
 * (FTS5 replaces the function's message by its own "SQL logic error"). */
int index_text_damage_seen(void);

#endif
