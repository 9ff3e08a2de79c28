/* s3_probe: one s3/client.c operation from the command line, for
 * test_s3_client.py against a real server. The configuration comes from
 * the environment (S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY,
 * S3_PREFIX, S3_PART_SIZE, S3_THRESHOLD, S3_PARALLEL, S3_RETRIES).
 *   check | put KEY FILE [if-none-match] | get KEY [OFFSET LEN] | getfd KEY
 *   | head KEY | delete KEY | list PREFIX [PAGE]
 * Output on stdout; errors as "error KIND STATUS CODE: MESSAGE" on stderr
 * (exit 1); "exists" (exit 2) for a refused conditional put; "absent"
 * (exit 3) for no such key. The requests sent go to stderr last. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "s3/client.h"

static int
print_object(const struct s3_object *o, void *ud)
{
	(void)ud;
	printf("%s %llu\n", o->key, (unsigned long long)o->size);
	return 0;
}

static uint64_t
num(const char *name)
{
	const char *s = getenv(name);
	return s && *s ? strtoull(s, NULL, 10) : 0;
}

int
main(int argc, char **argv)
{
	struct s3_config cfg = { 0 };
	struct s3_error err = { 0 };
	struct s3_client *c;
	int rc = -1;

	if (argc < 2)
		return 64;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	cfg.endpoint = getenv("S3_ENDPOINT");
	cfg.bucket = getenv("S3_BUCKET");
	cfg.access_key = getenv("S3_ACCESS_KEY");
	cfg.secret_key = getenv("S3_SECRET_KEY");
	cfg.prefix = getenv("S3_PREFIX");
	cfg.region = getenv("S3_REGION");
	cfg.path_style = 1;
	cfg.part_size = num("S3_PART_SIZE");
	cfg.multipart_threshold = num("S3_THRESHOLD");
	cfg.max_parallel = (int)num("S3_PARALLEL");
	cfg.max_retries = (int)num("S3_RETRIES");
	cfg.timeout = (double)num("S3_TIMEOUT");
	if ((c = s3_client_new(&cfg, &err)) == NULL)
		goto out;
	const char *op = argv[1];
	if (strcmp(op, "check") == 0) {
		rc = s3_check(c, &err);
	} else if (strcmp(op, "put") == 0 && argc >= 4) {
		int fd = open(argv[3], O_RDONLY);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0)
			return 66;
		rc = s3_put_fd(c, argv[2], fd, 0, (uint64_t)st.st_size,
		    argc > 4 && strcmp(argv[4], "if-none-match") == 0 ? S3_IF_NONE_MATCH : 0, &err);
		close(fd);
	} else if (strcmp(op, "get") == 0 && argc >= 3) {
		char *data;
		size_t got;
		rc = s3_get(c, argv[2], argc > 4 ? strtoull(argv[3], NULL, 10) : 0,
		    argc > 4 ? strtoull(argv[4], NULL, 10) : 0, &data, &got, &err);
		if (rc == 0) {
			fwrite(data, 1, got, stdout);
			free(data);
		}
		rc = rc == 1 ? 3 : rc;
	} else if (strcmp(op, "getfd") == 0 && argc >= 3) {
		uint64_t got;
		fflush(stdout);
		rc = s3_get_fd(c, argv[2], 1, &got, &err);
		rc = rc == 1 ? 3 : rc;
	} else if (strcmp(op, "head") == 0 && argc >= 3) {
		uint64_t size;
		rc = s3_head(c, argv[2], &size, &err);
		if (rc == 0)
			printf("%llu\n", (unsigned long long)size);
		rc = rc == 1 ? 3 : rc;
	} else if (strcmp(op, "delete") == 0 && argc >= 3) {
		rc = s3_delete(c, argv[2], &err);
	} else if (strcmp(op, "list") == 0 && argc >= 3) {
		rc = s3_list(c, argv[2], argc > 3 ? atoi(argv[3]) : 0, print_object, NULL, &err);
	} else {
		return 64;
	}
	fprintf(stderr, "requests %llu\n", (unsigned long long)s3_client_requests(c));
out:
	fflush(stdout);
	if (rc == 1) {
		fprintf(stderr, "exists\n");
		rc = 2;
	} else if (rc == 3) {
		fprintf(stderr, "absent\n");
	} else if (rc < 0) {
		fprintf(stderr, "error %s %ld %s: %s\n", err.kind, err.status, err.code, err.message);
		rc = 1;
	}
	s3_client_free(c);
	curl_global_cleanup();
	return rc;
}
