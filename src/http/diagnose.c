/*
 * What went wrong with a transfer, in the project's error kinds and words,
 * from curl's code, its error text and what it knows of the TLS session.
 * Private to src/http/. Messages name host:port, never the URL; curl's text
 * is quoted only when it cannot hold part of one.
 */
#include "http/diagnose.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "net/tls.h"

/* curl's own text, unless it could carry part of a URL. */
static const char *
safe_detail(const char *errbuf)
{
	if (errbuf[0] == '\0' || strstr(errbuf, "://") || strchr(errbuf, '@') ||
	    strchr(errbuf, '?'))
		return NULL;
	return errbuf;
}

void
http_diagnose_failure(CURL *easy, CURLcode code, const char *errbuf,
    const struct http_diag *d, struct net_error *err)
{
	const char *detail = safe_detail(errbuf);
	curl_off_t connect_us = 0;
	long vr = 0, os_errno = 0;

	switch (code) {
	case CURLE_COULDNT_RESOLVE_HOST:
		net_error_set(err, "dns", "cannot resolve the host of %s: check the host name in the URL "
		    "and this machine's DNS", d->hostport);
		return;
	case CURLE_COULDNT_RESOLVE_PROXY:
		net_error_set(err, "dns", "cannot resolve the proxy for %s: check the proxy settings "
		    "(http_proxy, https_proxy)", d->hostport);
		return;
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno);
		net_error_set(err, "refused", "cannot connect to %s: %s. Check that the server runs "
		    "and listens on that port", d->hostport,
		    os_errno ? strerror((int)os_errno) : "refused or unreachable");
		return;
	case CURLE_OPERATION_TIMEDOUT:
		curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connect_us);
		if (strncmp(errbuf, "Operation too slow", 18) == 0)
			net_error_set(err, "timeout", "the transfer with %s stalled: nothing moved for "
			    "%.0f s", d->hostport, d->stall_timeout);
		else if (connect_us == 0)
			net_error_set(err, "timeout", "connecting to %s timed out after %.1f s",
			    d->hostport, d->elapsed);
		else
			net_error_set(err, "timeout", "%s did not answer within %.1f s", d->hostport,
			    d->elapsed);
		return;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
		curl_easy_getinfo(easy, CURLINFO_SSL_VERIFYRESULT, &vr);
		net_error_set(err, "certificate", "certificate of %s rejected: %s. If you trust this "
		    "server's certificate, give its CA certificate (or the certificate itself) "
		    "in ca_file, or set allow_insecure_cert = true", d->hostport,
		    vr ? tls_verify_reason(vr) : detail ? detail : "it could not be verified");
		return;
	case CURLE_SSL_CACERT_BADFILE:
		net_error_set(err, "config", "cannot load the CA file %s (ca_file) for %s",
		    d->ca_file ? d->ca_file : "(the system's)", d->hostport);
		return;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_USE_SSL_FAILED:
		if (detail && (strstr(detail, "protocol version") || strstr(detail, "unsupported protocol")))
			net_error_set(err, "tls", "TLS handshake with %s failed: the server does not "
			    "support TLS 1.2 or newer (%s)", d->hostport, detail);
		else if (detail && strstr(detail, "wrong version number"))
			net_error_set(err, "tls", "TLS handshake with %s failed: the server did not answer "
			    "with TLS (%s); is it plain http?", d->hostport, detail);
		else
			net_error_set(err, "tls", "TLS handshake with %s failed: %s", d->hostport,
			    detail ? detail : curl_easy_strerror(code));
		return;
	case CURLE_TOO_MANY_REDIRECTS:
		net_error_set(err, "protocol", "%s redirected more than %d times (a redirect loop?)",
		    d->hostport, d->max_redirects);
		return;
	case CURLE_UNSUPPORTED_PROTOCOL:
		net_error_set(err, "protocol", "%s redirected to a URL that is neither http nor https; "
		    "not followed", d->hostport);
		return;
	case CURLE_GOT_NOTHING:
		net_error_set(err, "protocol", "%s closed the connection without answering", d->hostport);
		return;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
		net_error_set(err, "protocol", "the connection to %s broke off: %s", d->hostport,
		    detail ? detail : curl_easy_strerror(code));
		return;
	default:
		net_error_set(err, "protocol", "HTTP request to %s failed: %s%s%s", d->hostport,
		    curl_easy_strerror(code), detail ? ": " : "", detail ? detail : "");
		return;
	}
}

/* curl checks the host name itself (off with allow_insecure), so that check
 * is redone here on the leaf certificate that CURLOPT_CERTINFO kept. */
int
http_diagnose_insecure(CURL *easy, const char *hostport, const char **reason, char *fp,
    size_t fplen)
{
	struct curl_certinfo *ci = NULL;
	const char *pem = NULL;
	char host[300];
	unsigned char ip[16];
	long vr = 0;
	X509 *cert = NULL;
	BIO *bio;
	char *colon;

	*reason = NULL;
	if (curl_easy_getinfo(easy, CURLINFO_CERTINFO, &ci) != CURLE_OK || ci == NULL ||
	    ci->num_of_certs < 1)
		return -1;
	for (struct curl_slist *s = ci->certinfo[0]; s; s = s->next)
		if (strncmp(s->data, "Cert:", 5) == 0)
			pem = s->data + 5;
	if (pem && (bio = BIO_new_mem_buf(pem, -1)) != NULL) {
		cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	tls_cert_fingerprint(cert, fp, fplen);
	curl_easy_getinfo(easy, CURLINFO_SSL_VERIFYRESULT, &vr);
	snprintf(host, sizeof(host), "%s", hostport);
	if ((colon = strrchr(host, ':')) != NULL)
		*colon = '\0';
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	if (vr != 0)
		*reason = tls_verify_reason(vr);
	else if (cert && (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1
	    ? X509_check_ip_asc(cert, host, 0) != 1
	    : X509_check_host(cert, host, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) != 1))
		*reason = tls_verify_reason(X509_V_ERR_HOSTNAME_MISMATCH);
	X509_free(cert);
	return 0;
}
