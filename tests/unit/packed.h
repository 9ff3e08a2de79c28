#ifndef EMAILVAULT_TEST_PACKED_H
#define EMAILVAULT_TEST_PACKED_H
/*
 * Putting messages into a pack store for a test, and damaging them there:
 * archive_made writes a message as MAKE hands it out, so a message of any
 * size is archived without being held; archive_bytes takes one in memory.
 * Needs check.h first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/db.h"
#include "store/pack.h"

/* Gives up to CAP more bytes of the message into BUF; 0 at its end. */
typedef size_t (*make_fn)(void *ud, char *buf, size_t cap);

/* Archives the message MAKE gives; where its bytes went in *LOC, its id in
 * HASH. */
static inline void
archive_made(struct archive_db *db, struct pack_store *ps, make_fn make, void *ud,
    struct pack_location *loc, char hash[65])
{
	struct pack_writer *w = pack_writer_new(ps);
	char *buf = malloc(1 << 16);
	uint64_t size = 0;
	size_t n;
	int existed;

	CHECK(w != NULL && buf != NULL);
	while ((n = make(ud, buf, 1 << 16)) > 0) {
		CHECK_INT(pack_writer_write(w, buf, n), 0);
		size += n;
	}
	free(buf);
	CHECK_INT(pack_writer_finish(w), 0);
	snprintf(hash, 65, "%s", pack_writer_hash(w));
	CHECK_INT(pack_writer_store(w, &existed, loc), 0);
	pack_writer_free(w);
	CHECK_INT(pack_store_sync(ps), 0);
	CHECK_INT(db_begin(db), 0);
	struct db_message m = { .hash = hash, .size = size, .date_unix = -1,
		.sort_date = -1, .pack_segment = loc->segment, .pack_offset = loc->offset,
		.pack_length = loc->length, .pack_codec = loc->codec };
	CHECK_INT(db_message_add(db, &m, NULL), 0);
	CHECK_INT(pack_store_record(ps), 0);
	CHECK_INT(db_commit(db), 0);
	CHECK_INT(pack_store_committed(ps), 0);
}

struct made_bytes {
	const char *p;
	size_t left;
};

static inline size_t
make_bytes(void *ud, char *buf, size_t cap)
{
	struct made_bytes *b = ud;
	size_t k = b->left < cap ? b->left : cap;

	memcpy(buf, b->p, k);
	b->p += k;
	b->left -= k;
	return k;
}

/* Archives the LEN bytes of MSG; where they went in *LOC. */
static inline void
archive_bytes(struct archive_db *db, struct pack_store *ps, const char *msg, size_t len,
    struct pack_location *loc)
{
	struct made_bytes b = { msg, len };
	char hash[65];

	archive_made(db, ps, make_bytes, &b, loc, hash);
}

/* Flips a byte in the middle of what LOC says is stored. */
static inline void
damage(const char *d, const struct pack_location *loc)
{
	char path[4200];
	FILE *f;
	int c;

	pack_segment_path(d, loc->segment, path, sizeof(path));
	CHECK((f = fopen(path, "r+b")) != NULL);
	if (f == NULL)
		return;
	fseek(f, (long)(loc->offset + loc->length / 2), SEEK_SET);
	c = fgetc(f);
	fseek(f, (long)(loc->offset + loc->length / 2), SEEK_SET);
	fputc(c ^ 0x55, f);
	fclose(f);
}

#endif
