#ifndef EMAILVAULT_STORE_READER_H
#define EMAILVAULT_STORE_READER_H
/*
 * Reading archived messages back: the one way show, export, the indexer
 * and verify get a message's bytes by its SHA-256, whatever the layout of
 * the store underneath (today one file per message; later pack segments).
 * A reader is used by one thread at a time; open one per thread: it has
 * its own read-only connection to archive.db, so it sees what is committed.
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct store_reader;

struct store_reader *store_reader_open(const char *data_dir);
void store_reader_close(struct store_reader *r);

/*
 * The bytes of the message HASH (64 lower-case hex digits) in a malloc'd
 * buffer *DATA of *LEN bytes, NUL-terminated for convenience (the NUL is not
 * counted). At most MAX bytes (0: no limit); a bigger message fails with
 * EFBIG. 0, or -1 with errno (ENOENT: no such message recorded, or the
 * file that holds it is gone; EIO: what is there does not hash to HASH).
 */
int store_reader_get(struct store_reader *r, const char *hash, size_t max, char **data,
    size_t *len);

/*
 * The same in chunks, without holding the message: a stream over its bytes
 * (*SIZE gets how many), NULL with errno. store_stream_read gives up to CAP
 * bytes, 0 at the end, -1 with errno (EIO: the message, packed or an
 * old-layout blob file, did not hash to its name; what was given is then
 * not the message). A stream stays
 * valid after other reads and keeps its own descriptor; the reader must
 * outlive it.
 */
struct store_stream;
struct store_stream *store_reader_stream(struct store_reader *r, const char *hash, uint64_t *size);
ssize_t store_stream_read(struct store_stream *s, void *buf, size_t cap);
void store_stream_close(struct store_stream *s);

/*
 * The bytes of HASH given to PUT, whatever its size, in bounded memory: a
 * message up to STORE_WHOLE_MAX is read whole and checked before PUT sees
 * a byte; a bigger one goes in chunks as it is read and is checked at the
 * end (EIO then: what PUT was given is not the message). PUT returns 0, or
 * -1 to stop. 0; -1 with errno when reading failed; -2 when PUT stopped.
 */
#define STORE_WHOLE_MAX ((size_t)1 << 20)
int store_reader_copy(struct store_reader *r, const char *hash,
    int (*put)(void *ud, const char *p, size_t n), void *ud);

/* 1 if HASH is a well-formed message id (64 lower-case hex digits). */
int store_hash_valid(const char *hash);

#endif
