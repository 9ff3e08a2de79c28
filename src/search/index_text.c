#include "search/index_text.h"

#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#define LEVEL		1	/* as the pack store: measured in docs/performance.md */
#define RAW_BELOW	64	/* shorter texts (most subjects and names) stay raw */

struct index_text_packer {
	ZSTD_CCtx *cc;
};

struct index_text_packer *
index_text_packer_new(void)
{
	struct index_text_packer *p = calloc(1, sizeof(*p));

	if (p != NULL && (p->cc = ZSTD_createCCtx()) == NULL) {
		free(p);
		p = NULL;
	}
	return p;
}

void
index_text_packer_free(struct index_text_packer *p)
{
	if (p == NULL)
		return;
	ZSTD_freeCCtx(p->cc);
	free(p);
}

int
index_text_pack(struct index_text_packer *p, const char *s, size_t n,
    unsigned char **out, size_t *outlen)
{
	unsigned char *b;
	size_t bound, z;

	*out = NULL;
	*outlen = 0;
	if (n == 0)
		return 0;
	bound = n >= RAW_BELOW ? ZSTD_compressBound(n) : 0;
	if ((b = malloc(1 + (bound > n ? bound : n))) == NULL)
		return -1;
	if (bound > 0) {
		z = ZSTD_compressCCtx(p->cc, b + 1, bound, s, n, LEVEL);
		if (!ZSTD_isError(z) && z < n) {
			b[0] = 'z';
			*out = b;
			*outlen = 1 + z;
			return 0;
		}
	}
	b[0] = 'r';
	memcpy(b + 1, s, n);
	*out = b;
	*outlen = 1 + n;
	return 0;
}

int
index_text_unpack(const unsigned char *blob, size_t len, char **out, size_t *outlen)
{
	unsigned long long size;
	char *t;

	*out = NULL;
	*outlen = 0;
	if (len == 0) {
		size = 0;
	} else if (blob[0] == 'r') {
		size = len - 1;
	} else if (blob[0] == 'z') {
		size = ZSTD_getFrameContentSize(blob + 1, len - 1);
		if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
			return -1;
	} else {
		return -1;
	}
	if (size > INDEX_TEXT_MAX || (t = malloc((size_t)size + 1)) == NULL)
		return -1;
	if (len > 0 && blob[0] == 'z') {
		size_t got = ZSTD_decompress(t, (size_t)size, blob + 1, len - 1);
		if (ZSTD_isError(got) || got != size) {
			free(t);
			return -1;
		}
	} else if (size > 0) {
		memcpy(t, blob + 1, (size_t)size);
	}
	t[size] = '\0';
	*out = t;
	*outlen = (size_t)size;
	return 0;
}

static _Thread_local int damage_seen;

int
index_text_damage_seen(void)
{
	int seen = damage_seen;

	damage_seen = 0;
	return seen;
}

static void
ev_text(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const unsigned char *blob;
	char *text;
	size_t n;
	int len;

	(void)argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
		sqlite3_result_text(ctx, "", 0, SQLITE_STATIC);
		return;
	}
	blob = sqlite3_value_blob(argv[0]);
	len = sqlite3_value_bytes(argv[0]);
	if (index_text_unpack(blob, (size_t)len, &text, &n) < 0) {
		damage_seen = 1;
		sqlite3_result_error(ctx, "the search index's copy of a message's text is damaged: "
		    "run emailvault reindex", -1);
		return;
	}
	sqlite3_result_text(ctx, text, (int)n, free);
}

int
index_text_register(sqlite3 *db)
{
	/* INNOCUOUS: a view of the schema calls it, which SQLite allows only
	 * for such functions when the schema is not trusted. */
	return sqlite3_create_function(db, "ev_text", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC |
	    SQLITE_INNOCUOUS, NULL, ev_text, NULL, NULL);
}
