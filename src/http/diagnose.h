#ifndef EMAILVAULT_HTTP_DIAGNOSE_H
#define EMAILVAULT_HTTP_DIAGNOSE_H
/* Private to src/http/: curl's outcomes in the project's words. */
#include <stddef.h>

#include <curl/curl.h>

#include "net/error.h"

struct http_diag {
	const char *hostport;		/* of the request, safe to show */
	const char *ca_file;
	double elapsed;			/* seconds since the request was made */
	double stall_timeout;
	int max_redirects;
};

/* ERR for a transfer that ended with CODE (not CURLE_OK): a kind of dns,
 * refused, timeout, tls, certificate, protocol or config, and a message
 * naming host:port and what to do. */
void http_diagnose_failure(CURL *easy, CURLcode code, const char *errbuf,
    const struct http_diag *d, struct net_error *err);

/* For a transfer made with allow_insecure and CURLOPT_CERTINFO: REASON is
 * why its certificate would have been refused (NULL if it would not) and FP
 * its SHA-256 fingerprint. -1 when no certificate was seen (plain http, or a
 * reused connection). */
int http_diagnose_insecure(CURL *easy, const char *hostport, const char **reason, char *fp,
    size_t fplen);

#endif
