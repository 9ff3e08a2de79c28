/*
 * The IMAP view's server: the listening socket, the TLS context, the users
 * and the memory of failed logins per address (serve.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "log.h"
#include "serve/serve.h"
#include "serve/session.h"
#include "store/reader.h"

static int64_t
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

int
serve_hash_password(const char *password, size_t len, const unsigned char *salt, unsigned char *out)
{
	return PKCS5_PBKDF2_HMAC(password, (int)len, salt, SERVE_SALT, SERVE_PBKDF2_ROUNDS,
	    EVP_sha256(), SERVE_HASH, out) == 1 ? 0 : -1;
}

void
serve_user_free(struct serve_user *u)
{
	free(u->name);
	for (int i = 0; i < u->nsources; i++)
		free(u->sources[i]);
	free(u->sources);
	free(u->sources_json);
	OPENSSL_cleanse(u->hash, sizeof(u->hash));
}

const struct serve_user *
server_find_user(const struct server *srv, const char *name)
{
	for (int i = 0; i < srv->nusers; i++)
		if (strcmp(srv->users[i].name, name) == 0)
			return &srv->users[i];
	return NULL;
}

static int
same_sources(const struct serve_user *a, const struct serve_user *b)
{
	return strcmp(a->sources_json, b->sources_json) == 0;
}

/* Sessions hold a pointer to their user: repointed to the new array, or
 * closed when the user is gone or sees other sources now. */
void
server_set_users(struct server *srv, struct serve_user *users, int n)
{
	struct serve_user *old = srv->users;
	int nold = srv->nusers;

	srv->users = users;
	srv->nusers = n;
	session_users_changed(srv);
	for (int i = 0; i < nold; i++)
		serve_user_free(&old[i]);
	free(old);
}

const struct serve_user *
server_user_after_change(const struct server *srv, const struct serve_user *was)
{
	const struct serve_user *now = server_find_user(srv, was->name);

	return now && same_sources(now, was) ? now : NULL;
}

/* ---- failed logins per address ------------------------------------------------ */

static struct fail_entry *
fail_find(struct server *srv, const char *addr, int create)
{
	struct fail_entry *oldest = &srv->fails[0];
	int64_t now = mono();

	for (int i = 0; i < SERVE_FAIL_TABLE; i++) {
		struct fail_entry *f = &srv->fails[i];
		if (f->addr[0] && now - f->first > SERVE_FAIL_WINDOW)
			f->addr[0] = '\0';	/* forgotten */
		if (f->addr[0] && strcmp(f->addr, addr) == 0)
			return f;
		if (!f->addr[0] || (oldest->addr[0] && f->first < oldest->first))
			oldest = f;
	}
	if (!create)
		return NULL;
	snprintf(oldest->addr, sizeof(oldest->addr), "%s", addr);
	oldest->count = 0;
	oldest->first = now;
	return oldest;
}

int
server_login_allowed(struct server *srv, const char *addr)
{
	struct fail_entry *f = fail_find(srv, addr, 0);

	return f == NULL || f->count < SERVE_FAIL_MAX;
}

void
server_login_failed(struct server *srv, const char *addr)
{
	struct fail_entry *f = fail_find(srv, addr, 1);

	f->count++;
	srv->failures++;
	if (f->count == SERVE_FAIL_MAX)
		log_warn(NULL, "imap view: logins from this address refused for a while addr=%s "
		    "failures=%d window=%ds", addr, f->count, SERVE_FAIL_WINDOW);
}

/* ---- listening ------------------------------------------------------------------ */

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct server *srv = arg;
	char addr[64] = "?";

	(void)l;
	(void)salen;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
	if (srv->nsessions >= SERVE_MAX_SESSIONS) {
		static const char busy[] = "* BYE too many connections, try again later\r\n";
		log_warn(NULL, "imap view: connection refused, too many addr=%s", addr);
		if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			/* nothing to do: it is closed anyway */
		}
		evutil_closesocket(fd);
		return;
	}
	srv->connections++;
	session_new(srv, fd, addr);
}

static int
is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return 0;
}

static SSL_CTX *
tls_context(const char *cert, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "cannot load the certificate %s: %s", cert,
		    ERR_reason_error_string(ERR_get_error()));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "cannot load the key %s (or it does not match the certificate): %s",
		    key, ERR_reason_error_string(ERR_get_error()));
		goto fail;
	}
	ERR_clear_error();
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

struct server *
server_start(struct event_base *base, sqlite3 *db, const char *data_dir,
    const struct serve_opts *o, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	struct server *srv;

	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(o->listen, (struct sockaddr *)&ss, &sslen) < 0) {
		snprintf(err, errlen, "listen: expected an address and port such as 127.0.0.1:1993, got %s",
		    o->listen);
		return NULL;
	}
	if (((struct sockaddr_in *)&ss)->sin_port == 0) {
		snprintf(err, errlen, "listen: %s names no port", o->listen);
		return NULL;
	}
	int loopback = is_loopback((struct sockaddr *)&ss);
	if ((o->tls || o->cert_file || o->key_file) && (!o->cert_file || !o->key_file)) {
		snprintf(err, errlen, "TLS needs both cert_file and key_file");
		return NULL;
	}
	if (!o->tls && !o->cert_file && !loopback && !o->allow_plaintext) {
		snprintf(err, errlen, "listen: plain IMAP on %s, beyond loopback: give tls = true with "
		    "cert_file and key_file, or set allow_plaintext = true", o->listen);
		return NULL;
	}
	if ((srv = calloc(1, sizeof(*srv))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	srv->base = base;
	srv->db = db;
	srv->implicit_tls = o->tls;
	srv->plaintext_ok = o->tls || loopback || o->allow_plaintext;
	snprintf(srv->listen, sizeof(srv->listen), "%s", o->listen);
	if (o->cert_file && (srv->tls = tls_context(o->cert_file, o->key_file, err, errlen)) == NULL)
		goto fail;
	if ((srv->reader = store_reader_open(data_dir)) == NULL) {
		snprintf(err, errlen, "cannot open the archive for reading: %s", strerror(errno));
		goto fail;
	}
	srv->listener = evconnlistener_new_bind(base, accept_cb, srv,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, 64,
	    (struct sockaddr *)&ss, sslen);
	if (srv->listener == NULL) {
		snprintf(err, errlen, "cannot listen on %s: %s", o->listen, strerror(errno));
		goto fail;
	}
	log_info(NULL, "imap view listening listen=%s tls=%s", o->listen,
	    o->tls ? "implicit" : srv->tls ? "starttls" : "none");
	return srv;
fail:
	server_stop(srv);
	return NULL;
}

void
server_stop(struct server *srv)
{
	if (srv == NULL)
		return;
	if (srv->listener)
		evconnlistener_free(srv->listener);
	while (srv->sessions)
		session_close(srv->sessions, "the IMAP view is stopping");
	for (int i = 0; i < srv->nusers; i++)
		serve_user_free(&srv->users[i]);
	free(srv->users);
	store_reader_close(srv->reader);
	SSL_CTX_free(srv->tls);
	free(srv);
}
