/*
 * emailvault backup [--data DIR] --out DIR: the command around
 * store/backup.c (options, the summary, the exit status).
 */
#include "cli/backup.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/options.h"
#include "store/backup.h"

static double
seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
cmd_backup(int argc, char **argv)
{
	static const int allowed[] = { OPT_DATA, OPT_OUT, 0 };
	struct cli cli;
	struct backup_result r;
	char err[2048];
	double start = seconds();
	int first;

	cli_init(&cli);
	if ((first = parse_options(argc, argv, "backup", allowed, &cli)) < 0)
		return EXIT_USAGE;
	if (first < argc)
		return usage_error("backup takes no arguments (got '%s')", argv[first]);
	if (cli.out == NULL || cli.out[0] == '\0') {
		fprintf(stderr, "usage: emailvault backup [--data DIR] --out DIR\n");
		return EXIT_USAGE;
	}
	umask(077);	/* what is copied is mail: private whatever the caller's umask */
	if (backup_run(cli.data, cli.out, stderr, &r, err, sizeof(err)) < 0) {
		fprintf(stderr, "emailvault: backup failed: %s\n"
		    "emailvault: %s holds no complete backup (its BACKUP file is written last)\n",
		    err, cli.out);
		return 1;
	}
	printf("backup of %s in %s: %llu messages; segments: %llu copied, %llu linked, "
	    "%llu unchanged; blob files: %llu copied, %llu linked, %llu unchanged; "
	    "%llu oauth2 tokens; %.1f MB copied, %llu old files removed; %.1f s\n",
	    cli.data, cli.out, (unsigned long long)r.messages, (unsigned long long)r.seg_copied,
	    (unsigned long long)r.seg_linked, (unsigned long long)r.seg_kept,
	    (unsigned long long)r.blob_copied, (unsigned long long)r.blob_linked,
	    (unsigned long long)r.blob_kept, (unsigned long long)r.tokens,
	    (double)r.bytes_copied / 1e6, (unsigned long long)r.removed, seconds() - start);
	if (r.seg_remote)
		printf("%llu sealed segments are only on S3 (not in the local cache): the backup's "
		    "archive.db names their objects, and a restore reads them from the bucket with "
		    "the same storage = s3 { ... } (docs/operations.md)\n",
		    (unsigned long long)r.seg_remote);
	if (r.damaged) {
		fprintf(stderr, "emailvault: the archive in %s is damaged (%llu problems above): the "
		    "backup holds what there is; run emailvault verify --data %s\n", cli.data,
		    (unsigned long long)r.damaged, cli.data);
		return 1;
	}
	return 0;
}
