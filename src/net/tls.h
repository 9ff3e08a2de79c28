#ifndef EMAILVAULT_NET_TLS_H
#define EMAILVAULT_NET_TLS_H
/*
 * TLS for IMAP connections: TLS 1.2 or newer, the system trust store (or a
 * given CA file), host name verification and SNI. With allow_insecure the
 * handshake accepts any certificate, and the caller logs why it would have
 * been refused and its fingerprint.
 */
#include <stddef.h>

#include <openssl/ssl.h>

#include "net/error.h"

#define TLS_FINGERPRINT_MAX 100

/* A new SSL for HOST, or NULL with ERR set. FINGERPRINT (TLS_FINGERPRINT_MAX
 * bytes, owned by the caller, alive as long as the SSL) receives the server
 * certificate's SHA-256 as it is verified. */
SSL *tls_new_client(const char *host, int allow_insecure, const char *ca_file,
    char *fingerprint, struct net_error *err);

/* "self-signed certificate", "certificate has expired", ... for a verify result. */
const char *tls_verify_reason(long result);

/* SHA-256 of CERT as AB:CD:..., or "(no certificate)" for NULL. */
void tls_cert_fingerprint(X509 *cert, char *buf, size_t len);

/* SHA-256 of the peer certificate as AB:CD:..., or "(no certificate)". */
void tls_peer_fingerprint(SSL *ssl, char *buf, size_t len);

/* After a failed handshake: a certificate error or a TLS error, with text
 * naming HOSTPORT and what to do. OPENSSL_ERR from the bufferevent. */
void tls_classify_failure(SSL *ssl, unsigned long openssl_err, const char *hostport,
    struct net_error *err);

/* The negotiated protocol and cipher, for the log. */
void tls_describe_session(SSL *ssl, char *buf, size_t len);

#endif
