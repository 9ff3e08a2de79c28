/* store/backup.c on a pack store that stays open (as a running engine's
 * would): the snapshot's segments up to their committed length, sealed
 * ones linked and then kept, a changed copy replaced, old-layout blob
 * files (and those moved into packs while it runs), tokens, the markers,
 * and the folders it refuses. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sqlite3.h>

#include "check.h"
#include "store/backup.h"
#include "store/db.h"
#include "store/pack.h"
#include "store/verify.h"

static char root[] = "/tmp/ev-backup-XXXXXX";
static char data[4200], out[4200];

#define PIECE ((size_t)1 << 20)

static void
hex(const unsigned char *md, char *s)
{
	for (int i = 0; i < 32; i++)
		sprintf(s + 2 * i, "%02x", md[i]);
}

/* The next LEN bytes of the random stream whose state is *X: a big
 * message can be made a piece at a time. */
static void
noise_next(unsigned *x, char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		*x ^= *x << 13;
		*x ^= *x >> 17;
		*x ^= *x << 5;
		s[i] = (char)*x;
	}
}

static unsigned
noise_seed(unsigned seed)
{
	return seed * 2654435761u + 1;
}

static char *
noise(size_t len, unsigned seed)
{
	char *s = malloc(len);
	unsigned x = noise_seed(seed);

	noise_next(&x, s, len);
	return s;
}

/* Appends a message of LEN random bytes; with COMMIT recorded as a batch
 * would record it, else left past the committed length. */
static void
add(struct archive_db *db, struct pack_store *ps, size_t len, unsigned seed, int commit)
{
	struct pack_writer *w = pack_writer_new(ps);
	struct pack_location loc;
	unsigned char md[32];
	char h[65], *m = noise(len, seed);
	int existed;

	CHECK(w != NULL);
	CHECK_INT(pack_writer_write(w, m, len), 0);
	CHECK_INT(pack_writer_finish(w), 0);
	CHECK_INT(pack_writer_store(w, &existed, &loc), 0);
	pack_writer_free(w);
	SHA256((unsigned char *)m, len, md);
	hex(md, h);
	free(m);
	if (!commit)
		return;
	CHECK_INT(pack_store_sync(ps), 0);
	CHECK_INT(db_begin(db), 0);
	struct db_message dm = { .hash = h, .size = len, .date_unix = -1, .sort_date = -1,
		.pack_segment = loc.segment, .pack_offset = loc.offset, .pack_length = loc.length,
		.pack_codec = loc.codec };
	CHECK_INT(db_message_add(db, &dm, NULL), 0);
	CHECK_INT(pack_store_record(ps), 0);
	CHECK_INT(db_commit(db), 0);
	CHECK_INT(pack_store_committed(ps), 0);
}

/* A message of the old layout, LEN random bytes: its blob file (if
 * WITH_FILE) and a row without a pack place. */
static void
add_blob_of(struct archive_db *db, size_t len, unsigned seed, int with_file, char *h)
{
	unsigned char md[32];
	unsigned x = noise_seed(seed);
	char path[4700], *piece = malloc(PIECE);
	EVP_MD_CTX *sum = EVP_MD_CTX_new();
	int fd = -1;

	CHECK(piece != NULL && sum != NULL && EVP_DigestInit_ex(sum, EVP_sha256(), NULL) == 1);
	if (with_file) {
		snprintf(path, sizeof(path), "mkdir -p %s/blobs", data);
		CHECK_INT(system(path), 0);
		snprintf(path, sizeof(path), "%s/blobs/new.tmp", data);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0);
	}
	for (size_t off = 0; off < len;) {
		size_t n = len - off < PIECE ? len - off : PIECE;
		noise_next(&x, piece, n);
		EVP_DigestUpdate(sum, piece, n);
		if (fd >= 0)
			CHECK(write(fd, piece, n) == (ssize_t)n);
		off += n;
	}
	EVP_DigestFinal_ex(sum, md, NULL);
	EVP_MD_CTX_free(sum);
	free(piece);
	hex(md, h);
	if (fd >= 0) {
		char dst[4700], cmd[4800];
		close(fd);
		snprintf(cmd, sizeof(cmd), "mkdir -p %s/blobs/%.2s/%.2s", data, h, h + 2);
		CHECK_INT(system(cmd), 0);
		snprintf(dst, sizeof(dst), "%s/blobs/%.2s/%.2s/%s", data, h, h + 2, h);
		CHECK_INT(rename(path, dst), 0);
	}
	struct db_message dm = { .hash = h, .size = len, .date_unix = -1, .sort_date = -1 };
	CHECK_INT(db_message_add(db, &dm, NULL), 0);
}

static void
add_blob(struct archive_db *db, unsigned seed, int with_file, char *h)
{
	add_blob_of(db, 5000, seed, with_file, h);
}

static void
seg_path(const char *d, int64_t id, char *buf, size_t len)
{
	char dir[4300];

	snprintf(dir, sizeof(dir), "%s/packs", d);
	pack_segment_path(dir, id, buf, len);
}

static int
exists(const char *d, const char *name)
{
	char path[4400];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", d, name);
	return stat(path, &sb) == 0;
}

static void
verify_ok(const char *d, uint64_t messages, uint64_t unreferenced)
{
	struct verify_opts vo = { 0 };
	struct verify_result vr;
	char err[512];
	FILE *devnull = fopen("/dev/null", "w");

	CHECK_INT(verify_archive(d, &vo, devnull, &vr, err, sizeof(err)), 0);
	fclose(devnull);
	CHECK_INT(vr.checked, messages);
	CHECK_INT(vr.missing, 0);
	CHECK_INT(vr.corrupt, 0);
	CHECK_INT(vr.segments_bad, 0);
	CHECK_INT(vr.unreferenced, unreferenced);
}

static void
test_snapshot_links_keeps_and_replaces(void)
{
	char err[1024], path[4400], opath[4400], b1[65], b2[65];
	struct archive_db *db = db_open(data, 0, err, sizeof(err));
	struct pack_store *ps = pack_store_open(data, db_handle(db), err, sizeof(err));
	struct backup_result r;
	struct stat a, b;
	int64_t open_seg;
	FILE *devnull = fopen("/dev/null", "w");

	CHECK(ps != NULL);
	pack_store_set_segment_max(ps, 50000);	/* sealed after three messages */
	for (unsigned i = 0; i < 8; i++)
		add(db, ps, 20000, i + 1, 1);
	add(db, ps, 20000, 99, 0);		/* appended, not committed */
	add_blob(db, 200, 1, b1);
	open_seg = pack_store_segment(ps);
	CHECK_INT(open_seg, 3);			/* two sealed, the third open */
	seg_path(data, open_seg, path, sizeof(path));
	CHECK(stat(path, &a) == 0);

	CHECK_INT(backup_run(data, out, devnull, &r, err, sizeof(err)), 0);
	CHECK_STR(err, "");
	CHECK_INT(r.messages, 9);
	CHECK_INT(r.segments, 3);
	CHECK_INT(r.seg_linked, 2);		/* same filesystem */
	CHECK_INT(r.seg_copied, 1);
	CHECK_INT(r.blobs, 1);
	CHECK_INT(r.blob_linked, 1);
	CHECK_INT(r.damaged, 0);
	CHECK(exists(out, BACKUP_MANIFEST));
	CHECK(!exists(out, BACKUP_PARTIAL));
	CHECK(!exists(out, "archive.db-wal"));
	seg_path(out, open_seg, opath, sizeof(opath));
	CHECK(stat(opath, &b) == 0);
	CHECK(b.st_size < a.st_size);		/* up to the committed length only */
	CHECK_INT(b.st_mode & 0777, 0600);
	CHECK(stat(out, &b) == 0);
	CHECK_INT(b.st_mode & 0777, 0700);
	seg_path(data, 1, path, sizeof(path));
	seg_path(out, 1, opath, sizeof(opath));
	CHECK(stat(path, &a) == 0 && stat(opath, &b) == 0);
	CHECK(a.st_ino == b.st_ino);
	verify_ok(out, 9, 0);	/* the uncommitted tail was not copied */

	/* again: sealed segments and the blob are kept as they are */
	add(db, ps, 20000, 50, 1);
	CHECK_INT(backup_run(data, out, devnull, &r, err, sizeof(err)), 0);
	CHECK_INT(r.messages, 10);
	CHECK_INT(r.seg_kept, 2);
	CHECK_INT(r.seg_linked + r.seg_copied, r.segments - 2);
	CHECK_INT(r.blob_kept, 1);
	/* (the next batch's commit covered the record left uncommitted) */
	verify_ok(out, 10, 1);

	/* a sealed copy that is not the segment any more (here: another
	 * file with another checksum) is replaced */
	CHECK_INT(unlink(opath), 0);
	{
		int in = open(path, O_RDONLY), o = open(opath, O_WRONLY | O_CREAT, 0600);
		char buf[200000];
		ssize_t n = read(in, buf, sizeof(buf));
		CHECK(n > PACK_TRAILER);
		buf[n - 1] ^= 1;		/* the trailer's checksum */
		CHECK(write(o, buf, (size_t)n) == n);
		close(in);
		close(o);
	}
	CHECK_INT(backup_run(data, out, devnull, &r, err, sizeof(err)), 0);
	CHECK_INT(r.seg_linked, 1);
	CHECK(stat(path, &a) == 0 && stat(opath, &b) == 0);
	CHECK(a.st_ino == b.st_ino);
	verify_ok(out, 10, 1);

	/* moved into packs meanwhile: the old blob file goes from the backup;
	 * a blob whose file is gone is reported, and the backup goes on */
	CHECK_INT(sqlite3_exec(db_handle(db), "UPDATE messages SET pack_segment = 1, pack_offset = 16,"
	    " pack_length = 0, pack_codec = 0 WHERE pack_segment IS NULL", NULL, NULL, NULL),
	    SQLITE_OK);
	add_blob(db, 300, 0, b2);
	CHECK_INT(backup_run(data, out, devnull, &r, err, sizeof(err)), 0);
	CHECK_INT(r.damaged, 1);
	CHECK_INT(r.removed, 1);
	snprintf(path, sizeof(path), "%s/blobs/%.2s/%.2s/%s", out, b1, b1 + 2, b1);
	CHECK(access(path, F_OK) < 0);
	CHECK(exists(out, BACKUP_MANIFEST));

	pack_store_close(ps);
	db_close(db);
	fclose(devnull);
}

static void
test_tokens_copied_private(void)
{
	char err[1024], path[4400];
	struct backup_result r;
	struct stat sb;
	int fd;

	snprintf(path, sizeof(path), "%s/oauth2", data);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/oauth2/work.json", data);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && write(fd, "{\"refresh_token\":\"x\"}", 21) == 21);
	close(fd);
	snprintf(path, sizeof(path), "%s/oauth2/.work.json.tmp1", data);	/* being written */
	close(open(path, O_WRONLY | O_CREAT, 0600));
	CHECK_INT(backup_run(data, out, NULL, &r, err, sizeof(err)), 0);
	CHECK_INT(r.tokens, 1);
	snprintf(path, sizeof(path), "%s/oauth2/work.json", out);
	CHECK(stat(path, &sb) == 0);
	CHECK_INT(sb.st_size, 21);
	CHECK_INT(sb.st_mode & 0777, 0600);
	snprintf(path, sizeof(path), "%s/oauth2", out);
	CHECK(stat(path, &sb) == 0);
	CHECK_INT(sb.st_mode & 0777, 0700);
	CHECK(!exists(out, "oauth2/.work.json.tmp1"));
	/* gone from the data folder: gone from the backup */
	snprintf(path, sizeof(path), "%s/oauth2/work.json", data);
	unlink(path);
	CHECK_INT(backup_run(data, out, NULL, &r, err, sizeof(err)), 0);
	CHECK_INT(r.tokens, 0);
	CHECK(!exists(out, "oauth2/work.json"));
}

static void
test_refuses(void)
{
	char err[1024], path[4400];
	struct backup_result r;
	int fd;

	/* the data folder itself, or inside it */
	CHECK_INT(backup_run(data, data, NULL, &r, err, sizeof(err)), -1);
	CHECK(strstr(err, "data folder") != NULL);
	snprintf(path, sizeof(path), "%s/packs/b", data);
	CHECK_INT(backup_run(data, path, NULL, &r, err, sizeof(err)), -1);
	CHECK(strstr(err, "inside it") != NULL);
	rmdir(path);
	/* a folder of other things */
	snprintf(path, sizeof(path), "%s/other", root);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/other/notes.txt", root);
	close(open(path, O_WRONLY | O_CREAT, 0600));
	snprintf(path, sizeof(path), "%s/other", root);
	CHECK_INT(backup_run(data, path, NULL, &r, err, sizeof(err)), -1);
	CHECK(strstr(err, "not empty") != NULL);
	CHECK(!exists(path, "archive.db"));
	/* another data folder (restored from a backup: BACKUP is there too) */
	snprintf(path, sizeof(path), "%s/engine.lock", out);
	close(open(path, O_WRONLY | O_CREAT, 0600));
	CHECK_INT(backup_run(data, out, NULL, &r, err, sizeof(err)), -1);
	CHECK(strstr(err, "is a data folder") != NULL);
	unlink(path);
	/* no archive */
	snprintf(path, sizeof(path), "%s/nothing", root);
	CHECK_INT(backup_run(path, out, NULL, &r, err, sizeof(err)), -1);
	CHECK(strstr(err, "no archive") != NULL);
	/* a second backup into the same folder at the same time */
	snprintf(path, sizeof(path), "%s/%s", out, BACKUP_PARTIAL);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0);
	CHECK_INT(backup_run(data, out, NULL, &r, err, sizeof(err)), -1);
	CHECK(strstr(err, "another emailvault backup") != NULL);
	close(fd);
	unlink(path);
}

/* ---- a blob file moved into packs while the backup runs ---------------- */

static struct archive_db *moving_db;
static struct pack_store *moving_ps;
static char moving[4][65];
/* to a pack (big: is it copied in bounded memory?); to a pack; to another's
 * bytes; to a pack, and then a byte of it changed */
static size_t moving_len[4] = { 40u << 20, 7000, (2u << 20) + 1, (2u << 20) + 3 };
static long rss_after_moving;	/* KiB, when the peak was set back */

static long
status_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, strlen(field)) == 0)
			v = atol(line + strlen(field));
	fclose(f);
	return v;
}

/* Sets the process's peak RSS (VmHWM) back to what it holds now. */
static int
reset_peak(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY);
	int ok = fd >= 0 && write(fd, "5", 1) == 1;

	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

/* Records HASH at LOC and removes its blob file, as the migration does. */
static void
move_to(const char *hash, const struct pack_location *loc)
{
	char sql[512], path[4700];

	CHECK_INT(db_begin(moving_db), 0);
	snprintf(sql, sizeof(sql), "UPDATE messages SET pack_segment = %lld, pack_offset = %llu, "
	    "pack_length = %llu, pack_codec = %d WHERE hash = '%s'", (long long)loc->segment,
	    (unsigned long long)loc->offset, (unsigned long long)loc->length, loc->codec, hash);
	CHECK_INT(sqlite3_exec(db_handle(moving_db), sql, NULL, NULL, NULL), SQLITE_OK);
	CHECK_INT(pack_store_record(moving_ps), 0);
	CHECK_INT(db_commit(moving_db), 0);
	CHECK_INT(pack_store_committed(moving_ps), 0);
	snprintf(path, sizeof(path), "%s/blobs/%.2s/%.2s/%s", data, hash, hash + 2, hash);
	CHECK_INT(unlink(path), 0);
}

/* Appends message I of moving[] to the pack store, a piece at a time. */
static void
append_moving(int i, struct pack_location *loc)
{
	struct pack_writer *w = pack_writer_new(moving_ps);
	unsigned x = noise_seed(400 + (unsigned)i);
	char *piece = malloc(PIECE);

	CHECK(w != NULL && piece != NULL);
	for (size_t off = 0; off < moving_len[i];) {
		size_t n = moving_len[i] - off < PIECE ? moving_len[i] - off : PIECE;
		noise_next(&x, piece, n);
		CHECK_INT(pack_writer_write(w, piece, n), 0);
		off += n;
	}
	CHECK_INT(pack_writer_finish(w), 0);
	CHECK_INT(pack_writer_append(w, loc), 0);
	pack_writer_free(w);
	free(piece);
	CHECK_INT(pack_store_sync(moving_ps), 0);
}

/* After the snapshot: the first two and the fourth go into a pack; the
 * third is recorded at the first one's bytes, which do not hash to its
 * name; a byte of the fourth is changed in its segment. */
static void
move_while_backing_up(void)
{
	struct pack_location loc[4];
	char path[4700];
	unsigned char b;

	for (int i = 0; i < 4; i++) {
		if (i == 2)
			continue;
		append_moving(i, &loc[i]);
		move_to(moving[i], &loc[i]);
	}
	move_to(moving[2], &loc[0]);
	CHECK_INT(loc[3].codec, PACK_RAW);	/* random bytes: stored as they are */
	pack_segment_path(pack_store_dir(moving_ps), loc[3].segment, path, sizeof(path));
	int fd = open(path, O_RDWR);
	off_t at = (off_t)(loc[3].offset + PACK_RECORD_HEADER + loc[3].length / 2);
	CHECK(fd >= 0 && pread(fd, &b, 1, at) == 1);
	b ^= 0x20;
	CHECK(pwrite(fd, &b, 1, at) == 1);
	close(fd);
	/* what the backup holds from here on is its own */
	rss_after_moving = reset_peak() == 0 ? status_kib("VmRSS:") : -1;
}

static void
test_blobs_moved_meanwhile(void)
{
	char err[1024], path[4700], tmp[4700];
	struct backup_result r;
	struct stat sb;
	FILE *devnull = fopen("/dev/null", "w");

	moving_db = db_open(data, 0, err, sizeof(err));
	CHECK(moving_db != NULL);
	moving_ps = pack_store_open(data, db_handle(moving_db), err, sizeof(err));
	CHECK(moving_ps != NULL);
	for (int i = 0; i < 4; i++)
		add_blob_of(moving_db, moving_len[i], 400 + (unsigned)i, 1, moving[i]);
	backup_snapshot_taken = move_while_backing_up;
	CHECK_INT(backup_run(data, out, devnull, &r, err, sizeof(err)), 0);
	long peak = status_kib("VmHWM:");
	backup_snapshot_taken = NULL;
	CHECK_STR(err, "");
	CHECK_INT(r.blobs, 4);
	CHECK_INT(r.blob_copied, 2);		/* read from the pack they went to */
	CHECK_INT(r.damaged, 2);		/* other bytes; a byte changed */
	CHECK_INT(r.removed, 0);		/* no temporary file left to sweep */
	if (rss_after_moving > 0 && peak > 0) {
		/* 40 MiB copied: read whole, it would be held whole */
		printf("a 40 MiB message copied from a pack: peak RSS %ld KiB more\n",
		    peak - rss_after_moving);
		CHECK(peak - rss_after_moving < 8 * 1024);
	} else {
		printf("peak RSS cannot be set back here (/proc/self/clear_refs): not measured\n");
	}
	for (int i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/blobs/%.2s/%.2s/%s", out, moving[i],
		    moving[i] + 2, moving[i]);
		snprintf(tmp, sizeof(tmp), "%s/blobs/%.2s/%.2s/.%s.tmp", out, moving[i],
		    moving[i] + 2, moving[i]);
		CHECK(access(tmp, F_OK) < 0);	/* no partial copy left */
		if (i >= 2) {
			CHECK(access(path, F_OK) < 0);
			continue;
		}
		CHECK(stat(path, &sb) == 0);
		CHECK_INT((uint64_t)sb.st_size, moving_len[i]);
		CHECK_INT(sb.st_mode & 0777, 0600);
		{
			/* the same bytes: the name is their hash */
			unsigned char md[32];
			char h[65], *buf = malloc(moving_len[i]);
			int fd = open(path, O_RDONLY);

			CHECK(fd >= 0 && read(fd, buf, moving_len[i]) == (ssize_t)moving_len[i]);
			close(fd);
			SHA256((unsigned char *)buf, moving_len[i], md);
			hex(md, h);
			CHECK_STR(h, moving[i]);
			free(buf);
		}
	}
	pack_store_close(moving_ps);
	db_close(moving_db);
	fclose(devnull);
}

int
main(void)
{
	if (mkdtemp(root) == NULL)
		return 1;
	snprintf(data, sizeof(data), "%s/data", root);
	snprintf(out, sizeof(out), "%s/backup", root);
	mkdir(data, 0700);
	RUN(test_snapshot_links_keeps_and_replaces);
	RUN(test_tokens_copied_private);
	RUN(test_refuses);
	/* a data folder of its own */
	snprintf(data, sizeof(data), "%s/moving", root);
	snprintf(out, sizeof(out), "%s/moving-backup", root);
	mkdir(data, 0700);
	RUN(test_blobs_moved_meanwhile);
	{
		char cmd[4300];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
		if (system(cmd) != 0)
			return 1;
	}
	DONE();
}
