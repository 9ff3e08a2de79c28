/* AWS Signature V4 against the examples the AWS documentation publishes
 * for S3 ("Examples: Signature Calculations", single-chunk payloads):
 * secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, 20130524T000000Z,
 * us-east-1, examplebucket. Also the encoding rules the examples do not
 * cover (sorting, '/', spaces, upper-case hex). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "s3/sigv4.h"

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define HOST "examplebucket.s3.amazonaws.com"
#define DATE "20130524T000000Z"
#define CRED "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request, "

static struct sigv4_input
input(const char *method, const char *path, const struct sigv4_pair *q, size_t nq,
    const struct sigv4_pair *h, size_t nh, const char *payload)
{
	struct sigv4_input in = { method, path, q, nq, h, nh, payload, DATE, "us-east-1", "s3" };
	return in;
}

static int
starts(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static void
check_auth(const struct sigv4_input *in, const char *want)
{
	char *auth = sigv4_authorization(in, AK, SK);
	CHECK_STR(auth, want);
	free(auth);
}

static void
test_get_object_with_range(void)
{
	struct sigv4_pair h[] = {
		{ "Host", HOST }, { "Range", "bytes=0-9" },
		{ "x-amz-content-sha256", SIGV4_EMPTY_SHA256 }, { "x-amz-date", DATE },
	};
	struct sigv4_input in = input("GET", "/test.txt", NULL, 0, h, 4, SIGV4_EMPTY_SHA256);
	char *canon = sigv4_canonical_request(&in), *sts;

	CHECK_STR(canon, "GET\n/test.txt\n\nhost:" HOST "\nrange:bytes=0-9\n"
	    "x-amz-content-sha256:" SIGV4_EMPTY_SHA256 "\nx-amz-date:" DATE "\n\n"
	    "host;range;x-amz-content-sha256;x-amz-date\n" SIGV4_EMPTY_SHA256);
	sts = sigv4_string_to_sign(&in, canon);
	CHECK_STR(sts, "AWS4-HMAC-SHA256\n" DATE "\n20130524/us-east-1/s3/aws4_request\n"
	    "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
	check_auth(&in, CRED "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
	    "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	free(canon);
	free(sts);
}

static void
test_put_object(void)
{
	const char *body = "Welcome to Amazon S3.";
	char payload[65];
	sigv4_sha256_hex(body, strlen(body), payload);
	CHECK_STR(payload, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	struct sigv4_pair h[] = {
		{ "Host", HOST }, { "Date", "Fri, 24 May 2013 00:00:00 GMT" },
		{ "x-amz-date", DATE }, { "x-amz-storage-class", "REDUCED_REDUNDANCY" },
		{ "x-amz-content-sha256", payload },
	};
	struct sigv4_input in = input("PUT", "/test$file.text", NULL, 0, h, 5, payload);
	char *canon = sigv4_canonical_request(&in);

	/* '$' encoded in the path, headers sorted by lower-case name */
	CHECK(starts(canon, "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013"));
	check_auth(&in, CRED "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
	    "x-amz-storage-class, "
	    "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
	free(canon);
}

static void
test_get_bucket_lifecycle(void)
{
	struct sigv4_pair q[] = { { "lifecycle", "" } };
	struct sigv4_pair h[] = {
		{ "Host", HOST }, { "x-amz-date", DATE },
		{ "x-amz-content-sha256", SIGV4_EMPTY_SHA256 },
	};
	struct sigv4_input in = input("GET", "/", q, 1, h, 3, SIGV4_EMPTY_SHA256);
	char *canon = sigv4_canonical_request(&in);

	CHECK(starts(canon, "GET\n/\nlifecycle=\nhost:"));
	check_auth(&in, CRED "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
	    "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
	free(canon);
}

static void
test_list_objects(void)
{
	/* given out of order: the canonical query sorts them */
	struct sigv4_pair q[] = { { "prefix", "J" }, { "max-keys", "2" } };
	struct sigv4_pair h[] = {
		{ "Host", HOST }, { "x-amz-date", DATE },
		{ "x-amz-content-sha256", SIGV4_EMPTY_SHA256 },
	};
	struct sigv4_input in = input("GET", "/", q, 2, h, 3, SIGV4_EMPTY_SHA256);
	char *qs = sigv4_canonical_query(q, 2);

	CHECK_STR(qs, "max-keys=2&prefix=J");
	check_auth(&in, CRED "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
	    "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
	free(qs);
}

static void
test_signing_key(void)
{
	unsigned char key[32];
	char hex[65];

	CHECK_INT(sigv4_signing_key(SK, "20130524", "us-east-1", "s3", key), 0);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	CHECK_STR(hex, "dbb893acc010964918f1fd433add87c70e8b0db6be30c1fbeafefa5ec6ba8378");
}

static void
test_encoding(void)
{
	char *s = sigv4_uri_encode("a b/c~d+e*", 10, 1);
	CHECK_STR(s, "a%20b/c~d%2Be%2A");
	free(s);
	s = sigv4_uri_encode("a/b\xc3\xa9", 5, 0);
	CHECK_STR(s, "a%2Fb%C3%A9");
	free(s);
	/* a continuation token with '/' and '=': encoded in the query */
	struct sigv4_pair q[] = { { "continuation-token", "p/000001.seg=" }, { "list-type", "2" },
		{ "uploads", "" } };
	s = sigv4_canonical_query(q, 3);
	CHECK_STR(s, "continuation-token=p%2F000001.seg%3D&list-type=2&uploads=");
	free(s);
	/* header values trimmed, inner runs of spaces made one */
	struct sigv4_pair h[] = { { "X-Amz-Meta-A", "  one   two  " }, { "host", "h" } };
	struct sigv4_input in = input("HEAD", "/k", NULL, 0, h, 2, SIGV4_EMPTY_SHA256);
	s = sigv4_canonical_request(&in);
	CHECK_STR(s, "HEAD\n/k\n\nhost:h\nx-amz-meta-a:one two\n\nhost;x-amz-meta-a\n"
	    SIGV4_EMPTY_SHA256);
	free(s);
	char d[17];
	sigv4_amz_date(1369353600, d);
	CHECK_STR(d, DATE);
}

int
main(void)
{
	RUN(test_get_object_with_range);
	RUN(test_put_object);
	RUN(test_get_bucket_lifecycle);
	RUN(test_list_objects);
	RUN(test_signing_key);
	RUN(test_encoding);
	DONE();
}
