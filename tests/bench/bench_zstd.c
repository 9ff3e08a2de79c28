/*
 * The zstd level of the pack store (src/store/pack.c), by measurement:
 * every file under the given folders is one message, compressed alone at
 * each level as the pack store does (one frame per message; kept raw when
 * that is not smaller; a 56-byte record header each), and the stored
 * bytes / raw bytes and compression and decompression speeds printed per
 * level. Not a test: run it by hand,
 *
 *     cmake --build build --target bench_zstd
 *     ./build/bench_zstd [-l 1,3,6] DIR...
 *
 * Files are read into memory first (at most 4 GiB), so only the codec is
 * timed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <zstd.h>

#include "store/pack.h"

#define MAX_TOTAL	((uint64_t)4 << 30)

struct msg {
	char *data;
	size_t len;
};

static struct msg *msgs;
static size_t nmsgs, capmsgs;
static uint64_t total;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
load_file(const char *path, size_t size)
{
	FILE *f;
	char *data;

	if (total + size > MAX_TOTAL) {
		fprintf(stderr, "bench_zstd: more than 4 GiB; the rest is left out\n");
		return -1;
	}
	if ((f = fopen(path, "rb")) == NULL)
		return 0;
	if ((data = malloc(size ? size : 1)) == NULL || fread(data, 1, size, f) != size) {
		free(data);
		fclose(f);
		return 0;
	}
	fclose(f);
	if (nmsgs == capmsgs) {
		capmsgs = capmsgs ? capmsgs * 2 : 1024;
		if ((msgs = realloc(msgs, capmsgs * sizeof(*msgs))) == NULL) {
			perror("bench_zstd");
			exit(1);
		}
	}
	msgs[nmsgs].data = data;
	msgs[nmsgs++].len = size;
	total += size;
	return 0;
}

/* Every regular file under PATH, in name order (the same set each run). */
static int
load(const char *path)
{
	struct stat st;
	struct dirent **ents;
	int n, i, rc = 0;

	if (stat(path, &st) < 0)
		return 0;
	if (S_ISREG(st.st_mode))
		return strstr(path, "SOURCES.md") || strstr(path, "INDEX.tsv") ? 0 :
		    load_file(path, (size_t)st.st_size);
	if (!S_ISDIR(st.st_mode) || (n = scandir(path, &ents, NULL, alphasort)) < 0)
		return 0;
	for (i = 0; i < n; i++) {
		char sub[4096];

		if (rc == 0 && ents[i]->d_name[0] != '.') {
			snprintf(sub, sizeof(sub), "%s/%s", path, ents[i]->d_name);
			rc = load(sub);
		}
		free(ents[i]);
	}
	free(ents);
	return rc;
}

static void
level(int lvl, ZSTD_CCtx *cc, ZSTD_DCtx *dc)
{
	uint64_t stored = 0, raw_kept = 0;
	double tc = 0, td = 0, t;
	size_t i, cap = 0;
	char *out = NULL, *back = NULL;

	for (i = 0; i < nmsgs; i++) {
		size_t bound = ZSTD_compressBound(msgs[i].len), n;

		if (bound > cap) {
			cap = bound;
			if ((out = realloc(out, cap)) == NULL || (back = realloc(back, cap)) == NULL) {
				perror("bench_zstd");
				exit(1);
			}
		}
		t = now();
		n = ZSTD_compressCCtx(cc, out, cap, msgs[i].data, msgs[i].len, lvl);
		tc += now() - t;
		if (ZSTD_isError(n)) {
			fprintf(stderr, "bench_zstd: %s\n", ZSTD_getErrorName(n));
			exit(1);
		}
		if (n < msgs[i].len) {
			t = now();
			size_t got = ZSTD_decompressDCtx(dc, back, cap, out, n);
			td += now() - t;
			if (got != msgs[i].len || memcmp(back, msgs[i].data, got) != 0) {
				fprintf(stderr, "bench_zstd: round trip failed\n");
				exit(1);
			}
		} else {
			n = msgs[i].len;	/* stored raw */
			raw_kept++;
		}
		stored += PACK_RECORD_HEADER + n;
	}
	printf("  level %2d: stored/raw %.3f (%.1f MB), compress %6.1f MB/s, decompress %7.1f MB/s,"
	    " %llu of %zu kept raw\n", lvl, (double)stored / (double)total, stored / 1e6,
	    total / 1e6 / tc, td > 0 ? total / 1e6 / td : 0.0, (unsigned long long)raw_kept, nmsgs);
	free(out);
	free(back);
}

int
main(int argc, char **argv)
{
	char levels[64] = "1,3,6", *p, *save = NULL;
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	int i = 1;

	if (argc > 2 && strcmp(argv[1], "-l") == 0) {
		snprintf(levels, sizeof(levels), "%s", argv[2]);
		i = 3;
	}
	if (i >= argc || cc == NULL || dc == NULL) {
		fprintf(stderr, "usage: bench_zstd [-l 1,3,6] DIR...\n");
		return 2;
	}
	for (; i < argc; i++)
		if (load(argv[i]) < 0)
			break;
	printf("%zu messages, %.1f MB\n", nmsgs, total / 1e6);
	if (nmsgs == 0)
		return 1;
	for (p = strtok_r(levels, ",", &save); p; p = strtok_r(NULL, ",", &save))
		level(atoi(p), cc, dc);
	ZSTD_freeCCtx(cc);
	ZSTD_freeDCtx(dc);
	for (size_t k = 0; k < nmsgs; k++)
		free(msgs[k].data);
	free(msgs);
	return 0;
}
