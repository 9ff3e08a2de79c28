#include "net/tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

static SSL_CTX *ctx_verify, *ctx_insecure;
static int fp_index = -1;	/* SSL ex_data: where the leaf's fingerprint goes */

void
tls_cert_fingerprint(X509 *cert, char *buf, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t o = 0;

	if (cert == NULL || X509_digest(cert, EVP_sha256(), md, &mdlen) != 1) {
		snprintf(buf, len, "(no certificate)");
		return;
	}
	for (unsigned int i = 0; i < mdlen && o + 4 <= len; i++)
		o += (size_t)snprintf(buf + o, len - o, i ? ":%02X" : "%02X", md[i]);
}

/* Notes the server certificate's fingerprint while it is verified, so a
 * refused certificate can still be named in the error. */
static int
verify_cb(int ok, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	char *fp = ssl && fp_index >= 0 ? SSL_get_ex_data(ssl, fp_index) : NULL;

	if (fp && X509_STORE_CTX_get_error_depth(store) == 0)
		tls_cert_fingerprint(X509_STORE_CTX_get_current_cert(store), fp, TLS_FINGERPRINT_MAX);
	return ok;
}

static SSL_CTX *
new_ctx(int verify, const char *ca_file, struct net_error *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		net_error_set(err, "tls", "cannot create a TLS context: %s",
		    ERR_reason_error_string(ERR_get_error()));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/* No read-ahead (fewer read(2)s per record): bytes OpenSSL holds
	 * ahead are invisible to the bufferevent's poll, and an import
	 * stalled until the read timeout (measured: every run). */
	if (ca_file) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			net_error_set(err, "config", "cannot load CA file %s: %s", ca_file,
			    ERR_reason_error_string(ERR_get_error()));
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		net_error_set(err, "tls", "cannot load the system's trusted certificates");
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* Even "insecure" contexts verify, so the reason can be logged; they
	 * just do not fail the handshake. */
	SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, verify_cb);
	return ctx;
}

static int
is_ip_literal(const char *host)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL *
tls_new_client(const char *host, int allow_insecure, const char *ca_file, char *fingerprint,
    struct net_error *err)
{
	SSL_CTX *ctx, *own = NULL;
	SSL *ssl;
	X509_VERIFY_PARAM *param;

	if (ca_file) {
		own = ctx = new_ctx(!allow_insecure, ca_file, err);
	} else if (allow_insecure) {
		if (ctx_insecure == NULL)
			ctx_insecure = new_ctx(0, NULL, err);
		ctx = ctx_insecure;
	} else {
		if (ctx_verify == NULL)
			ctx_verify = new_ctx(1, NULL, err);
		ctx = ctx_verify;
	}
	if (ctx == NULL)
		return NULL;
	ssl = SSL_new(ctx);
	SSL_CTX_free(own);	/* the SSL holds its own reference */
	if (ssl == NULL) {
		net_error_set(err, "tls", "cannot create a TLS session");
		return NULL;
	}
	if (fp_index < 0)
		fp_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (fingerprint) {
		snprintf(fingerprint, TLS_FINGERPRINT_MAX, "(no certificate)");
		SSL_set_ex_data(ssl, fp_index, fingerprint);
	}
	param = SSL_get0_param(ssl);
	if (is_ip_literal(host)) {
		X509_VERIFY_PARAM_set1_ip_asc(param, host);
	} else {
		SSL_set_tlsext_host_name(ssl, host);	/* SNI */
		X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		X509_VERIFY_PARAM_set1_host(param, host, 0);
	}
	return ssl;
}

const char *
tls_verify_reason(long result)
{
	switch (result) {
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
		return "the server's certificate is self-signed";
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		return "the certificate chain ends in a self-signed certificate that is not trusted";
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		return "the certificate was issued by an unknown issuer (not in the trusted store)";
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return "the certificate has expired";
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return "the certificate is not yet valid (check this machine's clock)";
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return "the certificate does not match the host name";
	case X509_V_ERR_CERT_REVOKED:
		return "the certificate has been revoked";
	default:
		return X509_verify_cert_error_string(result);
	}
}

void
tls_peer_fingerprint(SSL *ssl, char *buf, size_t len)
{
	X509 *cert = SSL_get1_peer_certificate(ssl);
	const char *seen = fp_index >= 0 ? SSL_get_ex_data(ssl, fp_index) : NULL;

	if (cert == NULL && seen) {
		snprintf(buf, len, "%s", seen);	/* the handshake was aborted */
		return;
	}
	tls_cert_fingerprint(cert, buf, len);
	X509_free(cert);
}

void
tls_classify_failure(SSL *ssl, unsigned long openssl_err, const char *hostport,
    struct net_error *err)
{
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	char reason[256];

	if (vr != X509_V_OK && ERR_GET_REASON(openssl_err) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
		char fp[128];
		tls_peer_fingerprint(ssl, fp, sizeof(fp));
		net_error_set(err, "certificate",
		    "certificate of %s rejected: %s. If this server uses a self-signed or "
		    "private certificate you trust, set allow_insecure_cert = true in the source "
		    "file (its SHA-256 fingerprint is %s; compare it with the server's)",
		    hostport, tls_verify_reason(vr), fp);
		return;
	}
	if (openssl_err)
		ERR_error_string_n(openssl_err, reason, sizeof(reason));
	else
		snprintf(reason, sizeof(reason), "the connection closed during the handshake");
	if (ERR_GET_REASON(openssl_err) == SSL_R_WRONG_VERSION_NUMBER ||
	    ERR_GET_REASON(openssl_err) == SSL_R_PACKET_LENGTH_TOO_LONG)
		net_error_set(err, "tls",
		    "TLS handshake with %s failed: the server did not answer with TLS (%s). "
		    "Port 993 is implicit TLS (tls = true); port 143 needs tls = \"starttls\"",
		    hostport, reason);
	else if (ERR_GET_REASON(openssl_err) == SSL_R_UNSUPPORTED_PROTOCOL ||
	    ERR_GET_REASON(openssl_err) == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)
		net_error_set(err, "tls",
		    "TLS handshake with %s failed: the server does not support TLS 1.2 or newer (%s)",
		    hostport, reason);
	else
		net_error_set(err, "tls", "TLS handshake with %s failed: %s. Check that the port "
		    "speaks TLS and that the server's TLS set-up is sound", hostport, reason);
}

void
tls_describe_session(SSL *ssl, char *buf, size_t len)
{
	snprintf(buf, len, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}
