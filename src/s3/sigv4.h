#ifndef EMAILVAULT_S3_SIGV4_H
#define EMAILVAULT_S3_SIGV4_H
/*
 * AWS Signature Version 4 for S3 requests (the Authorization header form),
 * computed here so nothing depends on how a libcurl version signs: the
 * canonical request, the string to sign, the signing key and the header.
 * Pure functions of their input (no clock, no I/O); unit-tested against
 * the published examples of the AWS documentation.
 *
 * Every request signs x-amz-content-sha256 (the payload's SHA-256, which
 * S3 checks against the body) and x-amz-date; the caller puts the same
 * headers on the wire, host included.
 */
#include <stddef.h>
#include <time.h>

struct sigv4_pair {
	const char *name;
	const char *value;
};

struct sigv4_input {
	const char *method;
	const char *path;		/* raw, not encoded: "/bucket/key"; '/' kept */
	const struct sigv4_pair *query;	/* raw names and values; a valueless one: "" */
	size_t nquery;
	const struct sigv4_pair *headers;	/* every header signed, host included */
	size_t nheaders;
	const char *payload_hash;	/* 64 lower-case hex digits */
	const char *amz_date;		/* YYYYMMDDTHHMMSSZ (x-amz-date's value) */
	const char *region;
	const char *service;		/* "s3" */
};

/* S bytes %-encoded as SigV4 wants (unreserved A-Z a-z 0-9 - . _ ~ kept,
 * upper-case hex; '/' kept when KEEP_SLASH): malloc'd, NULL on ENOMEM. */
char *sigv4_uri_encode(const char *s, size_t len, int keep_slash);
/* The query parameters sorted by encoded name (then value), encoded, as
 * "a=1&b=" — also what the request's URL must carry. malloc'd. */
char *sigv4_canonical_query(const struct sigv4_pair *q, size_t n);
/* The canonical request (method, path, query, headers, signed names,
 * payload hash, newline separated). malloc'd. */
char *sigv4_canonical_request(const struct sigv4_input *in);
/* "AWS4-HMAC-SHA256\n<date>\n<scope>\n<hex sha256 of CANONICAL>". malloc'd. */
char *sigv4_string_to_sign(const struct sigv4_input *in, const char *canonical);
/* HMAC chain over date (YYYYMMDD), region, service, "aws4_request". 0 or -1. */
int sigv4_signing_key(const char *secret, const char *date8, const char *region,
    const char *service, unsigned char key[32]);
/* The Authorization header's value. malloc'd; NULL on failure. */
char *sigv4_authorization(const struct sigv4_input *in, const char *access_key,
    const char *secret_key);

/* T as x-amz-date wants it, in OUT[17]. */
void sigv4_amz_date(time_t t, char out[17]);
/* SHA-256 of DATA as 64 lower-case hex digits in OUT[65]. */
void sigv4_sha256_hex(const void *data, size_t len, char out[65]);

#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#endif
