#ifndef EMAILVAULT_S3_CLIENT_H
#define EMAILVAULT_S3_CLIENT_H
/*
 * An S3 client written against the S3 REST API: PUT (x-amz-content-sha256
 * the payload's hash, an explicit Content-Length, optionally If-None-Match:
 * *), GET with a Range, HEAD, DELETE, ListObjectsV2 with continuation, and
 * multipart uploads (create, parts, complete; abort on failure). Every
 * request is signed with AWS Signature V4 (s3/sigv4.c). Retried with
 * exponential backoff and jitter on 5xx (503 SlowDown included), 408/429,
 * and dropped or timed-out connections; never on 4xx, which are answers.
 *
 * This client blocks: it runs its own curl easy handles (and, for the parts
 * of a multipart upload, its own curl multi handle, MAX_PARALLEL parts in
 * flight). It is for offline commands and for threads other than the event
 * loop's (the pack store's uploader); the loop never waits on it.
 *
 * Keys given and returned are relative to the configured prefix.
 * Secret keys never appear in errors or logs; errors name host:port only.
 */
#include <stddef.h>
#include <stdint.h>

struct s3_config {
	const char *endpoint;		/* http://host[:port] or https://host[:port] */
	const char *region;		/* "us-east-1" when NULL */
	const char *bucket;
	const char *prefix;		/* "" when NULL; e.g. "engine-a/" */
	const char *access_key;
	const char *secret_key;
	const char *ca_file;		/* TLS: only this CA file's certificates */
	int path_style;			/* http://host/bucket/key, else http://bucket.host/key */
	uint64_t part_size;		/* multipart part size; 0: 8 MiB */
	uint64_t multipart_threshold;	/* bigger objects go multipart; 0: 16 MiB */
	int max_parallel;		/* parts in flight at once; 0: 4 */
	int max_retries;		/* 0: 5 */
	double timeout;			/* one attempt; 0: 120 s */
};

/* What went wrong: KIND is "storage" for the server's refusals (CODE holds
 * its S3 error code, e.g. SignatureDoesNotMatch) or a network kind (dns,
 * refused, timeout, tls, protocol). MESSAGE is for people. */
struct s3_error {
	char kind[16];
	long status;			/* HTTP status, 0 when none came */
	char code[64];
	char message[600];
};

struct s3_object {
	const char *key;		/* relative to the prefix */
	uint64_t size;
	const char *etag;
};

struct s3_client;

struct s3_client *s3_client_new(const struct s3_config *cfg, struct s3_error *err);
void s3_client_free(struct s3_client *c);
/* host:port of the endpoint, safe to show. */
const char *s3_client_hostport(const struct s3_client *c);

#define S3_IF_NONE_MATCH	1	/* PUT only if the key does not exist */

/* PUT of LEN bytes at DATA. 0 stored (and the ETag the server answered is
 * the bytes' MD5 when it is one), 1 with S3_IF_NONE_MATCH when the key
 * exists, -1 with ERR. */
int s3_put(struct s3_client *c, const char *key, const void *data, size_t len, int flags,
    struct s3_error *err);
/* The same from file FD's bytes [OFFSET, OFFSET+LEN): one PUT, or a
 * multipart upload when LEN passes the threshold (aborted on failure). */
int s3_put_fd(struct s3_client *c, const char *key, int fd, uint64_t offset, uint64_t len,
    int flags, struct s3_error *err);
/* GET of [OFFSET, OFFSET+LEN) (LEN 0: to the end) into a malloc'd buffer
 * (NUL-terminated). 0, 1 no such key, -1 with ERR. */
int s3_get(struct s3_client *c, const char *key, uint64_t offset, uint64_t len, char **data,
    size_t *got, struct s3_error *err);
/* The same written to FD from its current position. */
int s3_get_fd(struct s3_client *c, const char *key, int fd, uint64_t *got, struct s3_error *err);
/* HEAD: 0 (and its size), 1 no such key, -1 with ERR. */
int s3_head(struct s3_client *c, const char *key, uint64_t *size, struct s3_error *err);
/* DELETE: 0 (also when there was no such key), -1 with ERR. */
int s3_delete(struct s3_client *c, const char *key, struct s3_error *err);

/* Every object under PREFIX (relative), page by page (ListObjectsV2,
 * PAGE keys a page, 0: 1000): FN is called for each; its non-zero return
 * stops the listing and is returned. 0, or -1 with ERR. */
typedef int (*s3_list_fn)(const struct s3_object *o, void *ud);
int s3_list(struct s3_client *c, const char *prefix, int page, s3_list_fn fn, void *ud,
    struct s3_error *err);

/* The bucket answers these keys and this clock: one small signed listing.
 * 0, or -1 with ERR saying which (wrong keys, no such bucket, clock skew,
 * unreachable). */
int s3_check(struct s3_client *c, struct s3_error *err);

/* Requests sent (retries included), for tests and statistics. */
uint64_t s3_client_requests(const struct s3_client *c);

#endif
