/* The pack store without the engine: records in and out, dedup, the cut
 * after a crash, sealing, and damage found. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <sqlite3.h>

#include "check.h"
#include "store/db.h"
#include "store/pack.h"
#include "store/reader.h"

static char dir[] = "/tmp/ev-pack-XXXXXX";

static void
hex(const unsigned char *md, char *out)
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

/* Stores DATA as a new message and records it as a batch would. */
static void
store_one(struct archive_db *db, struct pack_store *ps, const char *data, size_t len,
    int *existed, struct pack_location *loc, char *hash_out)
{
	struct pack_writer *w = pack_writer_new(ps);
	unsigned char md[32];

	CHECK(w != NULL);
	/* in pieces, as a literal arrives */
	for (size_t off = 0; off < len;) {
		size_t n = len - off < 7777 ? len - off : 7777;
		CHECK_INT(pack_writer_write(w, data + off, n), 0);
		off += n;
	}
	CHECK_INT(pack_writer_finish(w), 0);
	SHA256((const unsigned char *)data, len, md);
	hex(md, hash_out);
	CHECK_STR(pack_writer_hash(w), hash_out);
	CHECK_INT(pack_writer_store(w, existed, loc), 0);
	pack_writer_free(w);
	CHECK_INT(pack_store_sync(ps), 0);
	CHECK_INT(db_begin(db), 0);
	if (!*existed) {
		struct db_message m = { .hash = hash_out, .size = len, .date_unix = -1,
			.sort_date = -1, .pack_segment = loc->segment, .pack_offset = loc->offset,
			.pack_length = loc->length, .pack_codec = loc->codec };
		CHECK_INT(db_message_add(db, &m, NULL), 0);
	}
	CHECK_INT(pack_store_record(ps), 0);
	CHECK_INT(db_commit(db), 0);
	CHECK_INT(pack_store_committed(ps), 0);
}

static void
check_read(const char *hash, const char *data, size_t len)
{
	struct store_reader *r = store_reader_open(dir);
	char *got;
	size_t glen;

	CHECK(r != NULL);
	CHECK_INT(store_reader_get(r, hash, 0, &got, &glen), 0);
	CHECK_INT(glen, len);
	CHECK(glen == len && memcmp(got, data, len) == 0);
	free(got);
	store_reader_close(r);
}

static char *
text(size_t len, unsigned seed)
{
	char *s = malloc(len);
	for (size_t i = 0; i < len; i++)
		s[i] = (i % 73 == 72) ? '\n' : (char)('a' + (seed + i * 7 + i / 13) % 26);
	return s;
}

static char *
noise(size_t len, unsigned seed)
{
	char *s = malloc(len);
	unsigned x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		s[i] = (char)x;
	}
	return s;
}

static void
test_round_trip_dedup_and_codecs(void)
{
	char err[512], h1[65], h2[65], h3[65], h4[65];
	struct archive_db *db = db_open(dir, 0, err, sizeof(err));
	struct pack_store *ps;
	struct pack_location l1, l2, l3, l4, again;
	int existed;
	char *small = text(20000, 1), *big = text(5 << 20, 2), *rnd = noise(30000, 3);

	CHECK(db != NULL);
	ps = pack_store_open(dir, db_handle(db), err, sizeof(err));
	CHECK(ps != NULL);
	store_one(db, ps, small, 20000, &existed, &l1, h1);
	CHECK_INT(existed, 0);
	CHECK_INT(l1.codec, PACK_ZSTD);		/* text compresses */
	CHECK(l1.length < 20000);
	store_one(db, ps, rnd, 30000, &existed, &l2, h2);
	CHECK_INT(l2.codec, PACK_RAW);		/* noise is kept raw */
	CHECK_INT(l2.length, 30000);
	store_one(db, ps, big, 5 << 20, &existed, &l3, h3);	/* spooled, compressed */
	CHECK_INT(l3.codec, PACK_ZSTD);
	CHECK(l3.length < (5 << 20) / 4);
	store_one(db, ps, "", 0, &existed, &l4, h4);		/* an empty message */
	/* the same bytes again: not stored twice */
	store_one(db, ps, small, 20000, &existed, &again, h1);
	CHECK_INT(existed, 1);
	CHECK_INT(again.offset, l1.offset);
	CHECK_INT(pack_store_appended(ps), 4);
	check_read(h1, small, 20000);
	check_read(h2, rnd, 30000);
	check_read(h3, big, 5 << 20);
	check_read(h4, "", 0);
	pack_store_close(ps);
	db_close(db);
	/* a new store sees the first copy through archive.db */
	db = db_open(dir, 0, err, sizeof(err));
	ps = pack_store_open(dir, db_handle(db), err, sizeof(err));
	CHECK(ps != NULL);
	store_one(db, ps, rnd, 30000, &existed, &again, h2);
	CHECK_INT(existed, 1);
	CHECK_INT(pack_store_appended(ps), 0);
	pack_store_close(ps);
	db_close(db);
	free(small);
	free(big);
	free(rnd);
}

static void
test_uncommitted_bytes_are_cut(void)
{
	char err[512], path[4200], h[65];
	struct archive_db *db = db_open(dir, 0, err, sizeof(err));
	struct pack_store *ps = pack_store_open(dir, db_handle(db), err, sizeof(err));
	struct pack_writer *w;
	struct pack_location loc;
	struct stat st;
	int existed;
	off_t before;

	CHECK(ps != NULL);
	pack_segment_path(pack_store_dir(ps), pack_store_segment(ps), path, sizeof(path));
	CHECK_INT(stat(path, &st), 0);
	before = st.st_size;
	/* appended, synced even, but its batch never commits: a crash */
	w = pack_writer_new(ps);
	CHECK_INT(pack_writer_write(w, "never committed\r\n", 17), 0);
	CHECK_INT(pack_writer_finish(w), 0);
	CHECK_INT(pack_writer_store(w, &existed, &loc), 0);
	pack_writer_free(w);
	CHECK_INT(pack_store_sync(ps), 0);
	stat(path, &st);
	CHECK(st.st_size > before);
	pack_store_close(ps);
	ps = pack_store_open(dir, db_handle(db), err, sizeof(err));
	CHECK(ps != NULL);
	stat(path, &st);
	CHECK_INT(st.st_size, before);		/* cut off at the start */
	/* and the store goes on appending where the commit left it */
	store_one(db, ps, "after the cut\r\n", 15, &existed, &loc, h);
	CHECK_INT(loc.offset, before);
	check_read(h, "after the cut\r\n", 15);
	pack_store_close(ps);
	db_close(db);
}

/* A segment resumed after a restart (its checksum read back only at the
 * first append) seals with the checksum and record count of every byte
 * in it, those from before the restart included. */
static void
test_resumed_segment_seals_whole(void)
{
	char err[512], h[65], path[4200];
	struct archive_db *db = db_open(dir, 0, err, sizeof(err));
	struct pack_store *ps = pack_store_open(dir, db_handle(db), err, sizeof(err));
	struct pack_location loc;
	unsigned char *seg, md[32], hdr[PACK_RECORD_HEADER];
	uint64_t records = 0, rec_trailer = 0;
	int64_t id;
	int existed, fd;
	struct stat st;

	CHECK(ps != NULL);
	store_one(db, ps, "before the restart\r\n", 20, &existed, &loc, h);
	id = pack_store_segment(ps);
	pack_store_close(ps);
	ps = pack_store_open(dir, db_handle(db), err, sizeof(err));
	CHECK(ps != NULL);
	CHECK_INT(pack_store_segment(ps), id);		/* resumed, not a new one */
	pack_store_set_segment_max(ps, 1);		/* this commit seals */
	store_one(db, ps, "after the restart\r\n", 19, &existed, &loc, h);
	CHECK_INT(loc.segment, id);
	CHECK_INT(pack_store_segment(ps), id + 1);
	pack_segment_path(pack_store_dir(ps), id, path, sizeof(path));
	CHECK((fd = open(path, O_RDONLY)) >= 0);
	CHECK_INT(fstat(fd, &st), 0);
	CHECK((seg = malloc((size_t)st.st_size)) != NULL);
	CHECK(pread(fd, seg, (size_t)st.st_size, 0) == st.st_size);
	close(fd);
	SHA256(seg, (size_t)st.st_size - PACK_TRAILER, md);
	CHECK(memcmp(seg + st.st_size - PACK_TRAILER + 16, md, 32) == 0);
	for (off_t off = PACK_HEADER; off + PACK_RECORD_HEADER <= st.st_size - PACK_TRAILER;) {
		uint64_t len = 0;
		memcpy(hdr, seg + off, sizeof(hdr));
		for (int i = 7; i >= 0; i--)
			len = len << 8 | hdr[16 + i];
		records++;
		off += PACK_RECORD_HEADER + (off_t)len;
	}
	for (int i = 7; i >= 0; i--)
		rec_trailer = rec_trailer << 8 | seg[st.st_size - PACK_TRAILER + 8 + i];
	CHECK(records >= 2);
	CHECK_INT(rec_trailer, records);
	free(seg);
	pack_store_close(ps);
	db_close(db);
}

static void
test_sealing_and_damage(void)
{
	char err[512], h[65], path[4200], first[65];
	struct archive_db *db = db_open(dir, 0, err, sizeof(err));
	struct pack_store *ps = pack_store_open(dir, db_handle(db), err, sizeof(err));
	struct pack_location loc;
	int existed;
	int64_t seg0 = pack_store_segment(ps);
	char *m = text(10000, 9);

	CHECK(ps != NULL);
	pack_store_set_segment_max(ps, 1);	/* every commit seals */
	store_one(db, ps, m, 10000, &existed, &loc, first);
	CHECK_INT(loc.segment, seg0);
	CHECK_INT(pack_store_segment(ps), seg0 + 1);
	sqlite3_stmt *st;
	CHECK_INT(sqlite3_prepare_v2(db_handle(db), "SELECT sealed, sha256 IS NOT NULL FROM segments "
	    "WHERE id = ?1", -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_int64(st, 1, seg0);
	CHECK_INT(sqlite3_step(st), SQLITE_ROW);
	CHECK_INT(sqlite3_column_int(st, 0), 1);
	CHECK_INT(sqlite3_column_int(st, 1), 1);
	sqlite3_finalize(st);
	check_read(first, m, 10000);		/* sealed segments stay readable */
	/* a flipped byte is found, never returned as the message */
	pack_segment_path(pack_store_dir(ps), seg0, path, sizeof(path));
	int fd = open(path, O_RDWR);
	unsigned char b;
	CHECK(pread(fd, &b, 1, (off_t)(loc.offset + PACK_RECORD_HEADER + 3)) == 1);
	b ^= 0x40;
	CHECK(pwrite(fd, &b, 1, (off_t)(loc.offset + PACK_RECORD_HEADER + 3)) == 1);
	close(fd);
	struct store_reader *r = store_reader_open(dir);
	char *got;
	size_t glen;
	CHECK_INT(store_reader_get(r, first, 0, &got, &glen), -1);
	CHECK_INT(errno, EIO);
	store_reader_close(r);
	(void)h;
	pack_store_close(ps);
	db_close(db);
	free(m);
}

/* A message whose stored bytes span many of pack_read's input buffers:
 * read back whole, and a byte flipped far into it is found. */
static void
test_read_in_chunks(void)
{
	char err[512], hash[65], path[4200];
	struct archive_db *db = db_open(dir, 0, err, sizeof(err));
	struct pack_store *ps = pack_store_open(dir, db_handle(db), err, sizeof(err));
	struct pack_location loc;
	size_t half = 512 * 1024;
	char *m = malloc(2 * half), *t = text(half, 5), *n = noise(half, 6);
	int existed;

	CHECK(ps != NULL && m != NULL);
	memcpy(m, t, half);
	memcpy(m + half, n, half);
	store_one(db, ps, m, 2 * half, &existed, &loc, hash);
	CHECK_INT(existed, 0);
	CHECK_INT(loc.codec, PACK_ZSTD);
	CHECK(loc.length > 4 * 64 * 1024);	/* several input buffers */
	check_read(hash, m, 2 * half);
	pack_segment_path(pack_store_dir(ps), loc.segment, path, sizeof(path));
	int fd = open(path, O_RDWR);
	unsigned char b;
	off_t at = (off_t)(loc.offset + PACK_RECORD_HEADER + loc.length - 1000);
	CHECK(pread(fd, &b, 1, at) == 1);
	b ^= 0x01;
	CHECK(pwrite(fd, &b, 1, at) == 1);
	close(fd);
	struct store_reader *r = store_reader_open(dir);
	char *got = NULL;
	size_t glen;
	CHECK_INT(store_reader_get(r, hash, 0, &got, &glen), -1);
	CHECK_INT(errno, EIO);
	CHECK(got == NULL);
	store_reader_close(r);
	pack_store_close(ps);
	db_close(db);
	free(m);
	free(t);
	free(n);
}

/* Gathers what store_reader_copy gives. */
struct gathered {
	char *p;
	size_t n;
};

static int
gather(void *ud, const char *p, size_t n)
{
	struct gathered *g = ud;
	char *more = realloc(g->p, g->n + n);

	if (more == NULL)
		return -1;
	memcpy(more + g->n, p, n);
	g->p = more;
	g->n += n;
	return 0;
}

/* An old-layout blob file is checked against its name as a packed record
 * is against its header: read whole, in chunks, and copied. */
static void
test_old_layout_blobs_checked(void)
{
	char err[512], hash[65], path[4300];
	struct archive_db *db = db_open(dir, 0, err, sizeof(err));
	size_t sizes[] = { 5000, 2 * STORE_WHOLE_MAX };

	CHECK(db != NULL);
	for (int i = 0; i < 2; i++) {
		size_t len = sizes[i];
		char *m = noise(len, 40 + (unsigned)i), buf[4096];
		unsigned char md[32];
		struct gathered g = { NULL, 0 };
		struct store_stream *st;
		uint64_t size;
		ssize_t n;
		int fd;

		SHA256((unsigned char *)m, len, md);
		hex(md, hash);
		snprintf(path, sizeof(path), "mkdir -p %s/blobs/%.2s/%.2s", dir, hash, hash + 2);
		CHECK_INT(system(path), 0);
		snprintf(path, sizeof(path), "%s/blobs/%.2s/%.2s/%s", dir, hash, hash + 2, hash);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0 && write(fd, m, len) == (ssize_t)len);
		close(fd);
		struct db_message dm = { .hash = hash, .size = len, .date_unix = -1, .sort_date = -1 };
		CHECK_INT(db_message_add(db, &dm, NULL), 0);

		struct store_reader *r = store_reader_open(dir);
		CHECK(r != NULL);
		CHECK_INT(store_reader_copy(r, hash, gather, &g), 0);
		CHECK(g.n == len && memcmp(g.p, m, len) == 0);
		if (len <= STORE_WHOLE_MAX)
			check_read(hash, m, len);

		/* one byte changed in the file: each way of reading says EIO */
		fd = open(path, O_RDWR);
		CHECK(pwrite(fd, "\x7f", 1, (off_t)(len / 2)) == 1);
		close(fd);
		char *got = NULL;
		size_t glen;
		if (len <= STORE_WHOLE_MAX) {
			CHECK_INT(store_reader_get(r, hash, 0, &got, &glen), -1);
			CHECK_INT(errno, EIO);
			CHECK(got == NULL);
		}
		free(g.p);
		g.p = NULL;
		g.n = 0;
		CHECK_INT(store_reader_copy(r, hash, gather, &g), -1);
		CHECK_INT(errno, EIO);
		CHECK((st = store_reader_stream(r, hash, &size)) != NULL);
		CHECK(size == len);
		while ((n = store_stream_read(st, buf, sizeof(buf))) > 0)
			;
		CHECK_INT(n, -1);
		CHECK_INT(errno, EIO);
		store_stream_close(st);
		/* and put back, whole again */
		fd = open(path, O_RDWR);
		CHECK(pwrite(fd, m + len / 2, 1, (off_t)(len / 2)) == 1);
		close(fd);
		free(g.p);
		g.p = NULL;
		g.n = 0;
		CHECK_INT(store_reader_copy(r, hash, gather, &g), 0);
		CHECK(g.n == len);
		free(g.p);
		store_reader_close(r);
		free(m);
	}
	db_close(db);
}

/* pack_writer_also: the header work runs once over the head, on the
 * compressor's thread for a message it compresses, here otherwise (a small
 * one, a spooled one at drop_head); a result never taken is freed. */
static pthread_t test_thread;
static _Atomic int also_runs, also_frees, also_elsewhere;	/* set on two threads */

/* Gives the compressor thread time to take up what it was given: the
 * store waits only half a millisecond for it before it does the work
 * itself, and on a loaded machine the thread may not have run by then. */
static void
wait_for_runs(int n)
{
	struct timespec tick = { 0, 1000000L };

	for (int i = 0; i < 10000 && also_runs < n; i++)
		nanosleep(&tick, NULL);
}

static void *
first_line(const void *head, size_t len)
{
	const char *nl = memchr(head, '\n', len);

	also_runs++;
	if (!pthread_equal(pthread_self(), test_thread))
		also_elsewhere++;
	return strndup(head, nl ? (size_t)(nl - (const char *)head) : len);
}

static void
count_free(void *p)
{
	also_frees++;
	free(p);
}

static struct pack_writer *
writer_of(struct pack_store *ps, const char *data, size_t len)
{
	struct pack_writer *w = pack_writer_new(ps);

	CHECK(w != NULL);
	pack_writer_also(w, first_line, count_free);
	for (size_t off = 0; off < len;) {
		size_t n = len - off < 65536 ? len - off : 65536;
		CHECK_INT(pack_writer_write(w, data + off, n), 0);
		off += n;
	}
	CHECK_INT(pack_writer_finish(w), 0);
	return w;
}

static void
test_header_work_beside_compression(void)
{
	char err[512];
	struct archive_db *db = db_open(dir, 0, err, sizeof(err));
	struct pack_store *ps = pack_store_open(dir, db_handle(db), err, sizeof(err));
	struct pack_location loc;
	int existed;
	char *mid = text(20000, 7), *big = text(5 << 20, 8), *r;
	const char *tiny = "Subject: tiny\r\n\r\nhi\r\n";
	struct pack_writer *w;

	CHECK(ps != NULL);
	test_thread = pthread_self();
	memcpy(mid, "Subject: mid\n", 13);
	memcpy(big, "Subject: big\n", 13);

	/* compressed on the thread: the work went there too */
	w = writer_of(ps, mid, 20000);
	wait_for_runs(1);
	pack_writer_drop_head(w);
	CHECK_INT(pack_writer_store(w, &existed, &loc), 0);
	r = pack_writer_also_result(w);
	CHECK_STR(r, "Subject: mid");
	CHECK_INT(also_runs, 1);
	CHECK_INT(also_elsewhere, 1);
	free(r);
	CHECK(pack_writer_also_result(w) == NULL);	/* once */
	pack_writer_free(w);

	/* small: done here, when asked, even after drop_head */
	w = writer_of(ps, tiny, strlen(tiny));
	pack_writer_drop_head(w);
	CHECK_INT(also_runs, 1);
	r = pack_writer_also_result(w);
	CHECK_STR(r, "Subject: tiny\r");
	CHECK_INT(also_elsewhere, 1);
	free(r);
	pack_writer_free(w);

	/* spooled: done from its copy of the head before that goes */
	w = writer_of(ps, big, 5 << 20);
	pack_writer_drop_head(w);
	CHECK_INT(also_runs, 3);
	r = pack_writer_also_result(w);
	CHECK_STR(r, "Subject: big");
	free(r);
	pack_writer_free(w);

	/* never taken: freed with the writer */
	w = writer_of(ps, mid, 20000);
	pack_writer_free(w);
	CHECK_INT(also_frees, also_runs - 3);
	pack_store_close(ps);
	db_close(db);
	free(mid);
	free(big);
}

int
main(void)
{
	if (mkdtemp(dir) == NULL)
		return 1;
	RUN(test_round_trip_dedup_and_codecs);
	RUN(test_uncommitted_bytes_are_cut);
	RUN(test_resumed_segment_seals_whole);
	RUN(test_sealing_and_damage);
	RUN(test_read_in_chunks);
	RUN(test_old_layout_blobs_checked);
	RUN(test_header_work_beside_compression);
	{
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			return 1;
	}
	DONE();
}
