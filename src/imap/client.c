#include "imap/client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "imap/format.h"
#include "log.h"
#include "net/connect.h"
#include "net/tls.h"

/* Bytes one read callback may take from the socket (libevent's default is
 * 16 KiB): fewer turns of the loop per MiB of mail. */
#define CLIENT_READ_MAX (256 * 1024)

enum state {
	ST_CONNECTING,		/* DNS and TCP */
	ST_TLS,			/* implicit TLS handshake */
	ST_GREETING,
	ST_PREAUTH,		/* capabilities, STARTTLS, login */
	ST_STARTTLS,		/* STARTTLS handshake */
	ST_READY,
	ST_CLOSED
};

struct cmd {
	char tag[16];
	char **parts;
	size_t *lens;
	int nparts;
	int next_part;		/* next part to send after a "+" */
	int internal;		/* part of connecting: may run before READY */
	struct imap_handler h;
	struct cmd *next;
};

struct imap_client {
	struct event_base *base;
	enum state state;
	char *host, *username, *password, *ca_file, *log_source;
	char hostport[300];
	int port;
	enum imap_tls_mode tls;
	int allow_insecure;
	double connect_timeout, command_timeout;
	int pipeline;
	int auth;			/* 0 auto, 'L' LOGIN only, 'P' PLAIN only,
					 * 'O' OAUTHBEARER only, 'X' XOAUTH2 only */
	int bearer;			/* PASSWORD is an OAuth2 access token */
	int mech;			/* the bearer mechanism sent: 'O' or 'X' */
	int challenges;			/* error challenges answered (at most one) */
	char challenge[256];		/* the server's decoded error challenge, printable */

	struct net_connect *nc;
	struct bufferevent *bev;
	SSL *ssl;			/* owned by bev */
	struct imap_parser *parser;
	struct event *timer;

	struct cmd *pending, *pending_tail;
	struct cmd *flight, *flight_tail;
	int in_flight;
	struct cmd *awaiting;		/* sent, waits for "+" */
	unsigned next_tag;

	char *caps;			/* " IMAP4REV1 IDLE ... " upper case */
	int caps_from_code;

	imap_ready_fn ready;
	void *ready_ud;
	void (*idle_fn)(void *ud, const struct imap_response *r);
	void *idle_ud;
	int idling;

	struct net_error err;
	int failed;
	int in_feed;			/* inside imap_parser_feed */
	int starttls_ok;		/* STARTTLS answered OK: switch after the feed */
	char bye[512], bye_code[32];
	uint64_t bytes_in;
	char security[96];
	char fingerprint[TLS_FINGERPRINT_MAX];
};

static void client_fail(struct imap_client *c, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void flush(struct imap_client *c);
static void start_login(struct imap_client *c);
static void request_caps(struct imap_client *c);

/* ---- small helpers ----------------------------------------------------- */

static char *
dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void
wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void
imap_response_describe(const struct imap_response *r, char *buf, size_t len)
{
	if (r->code.name && r->code.raw_len)
		snprintf(buf, len, "%s [%s %.*s] %.*s", imap_status_name(r->status), r->code.name,
		    (int)r->code.raw_len, r->code.raw, (int)r->text_len, r->text);
	else if (r->code.name)
		snprintf(buf, len, "%s [%s] %.*s", imap_status_name(r->status), r->code.name,
		    (int)r->text_len, r->text);
	else
		snprintf(buf, len, "%s %.*s", imap_status_name(r->status), (int)r->text_len, r->text);
}

static void
set_timer(struct imap_client *c, double seconds)
{
	struct timeval tv;

	if (c->timer == NULL)
		return;
	if (seconds <= 0) {
		evtimer_del(c->timer);
		return;
	}
	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	evtimer_add(c->timer, &tv);
}

/* While a command waits (and we are not idling), silence is a timeout. */
static void
rearm_timer(struct imap_client *c)
{
	if (c->state != ST_READY)
		return;		/* the connect timer runs until READY */
	if (c->in_flight > 0 && !c->idling)
		set_timer(c, c->command_timeout);
	else
		set_timer(c, 0);
}

static void
free_cmd(struct cmd *cmd)
{
	for (int i = 0; i < cmd->nparts; i++) {
		explicit_bzero(cmd->parts[i], cmd->lens[i]);	/* may hold a password */
		free(cmd->parts[i]);
	}
	free(cmd->parts);
	free(cmd->lens);
	free(cmd);
}

/* ---- capabilities ------------------------------------------------------ */

static void
caps_set_from_node(struct imap_client *c, const struct imap_node *list)
{
	size_t total = 2;
	char *s;

	for (const struct imap_node *n = imap_node_child(list); n; n = imap_node_next(n)) {
		size_t len;
		if (imap_node_bytes(n, &len))
			total += len + 1;
	}
	s = malloc(total + 1);
	if (s == NULL)
		return;
	size_t o = 0;
	s[o++] = ' ';
	for (const struct imap_node *n = imap_node_child(list); n; n = imap_node_next(n)) {
		size_t len;
		const char *b = imap_node_bytes(n, &len);
		if (b == NULL || imap_node_type(n) != IMAP_NODE_ATOM)
			continue;
		for (size_t i = 0; i < len; i++)
			s[o++] = (char)((b[i] >= 'a' && b[i] <= 'z') ? b[i] - 32 : b[i]);
		s[o++] = ' ';
	}
	s[o] = '\0';
	free(c->caps);
	c->caps = s;
}

int
imap_client_has_cap(const struct imap_client *c, const char *cap)
{
	char want[128];
	size_t n = strlen(cap);

	if (c->caps == NULL || n + 3 > sizeof(want))
		return 0;
	want[0] = ' ';
	for (size_t i = 0; i < n; i++)
		want[i + 1] = (char)((cap[i] >= 'a' && cap[i] <= 'z') ? cap[i] - 32 : cap[i]);
	want[n + 1] = ' ';
	want[n + 2] = '\0';
	return strstr(c->caps, want) != NULL;
}

const char *
imap_client_caps(const struct imap_client *c)
{
	return c->caps ? c->caps : "";
}

/* Capabilities may come in a [CAPABILITY ...] code of any status response. */
static void
note_code_caps(struct imap_client *c, const struct imap_response *r)
{
	if (r->code.id == IMAP_CODE_CAPABILITY && r->code.args) {
		caps_set_from_node(c, r->code.args);
		c->caps_from_code = 1;
	}
}

/* ---- teardown ---------------------------------------------------------- */

static void
teardown_io(struct imap_client *c)
{
	if (c->nc) {
		net_connect_cancel(c->nc);
		c->nc = NULL;
	}
	if (c->bev) {
		bufferevent_free(c->bev);	/* closes the socket, frees the SSL */
		c->bev = NULL;
		c->ssl = NULL;
	}
	if (c->timer)
		evtimer_del(c->timer);
}

/* Ends every command with ERR (or silently). */
static void
drain_commands(struct imap_client *c, const struct net_error *err, int silent)
{
	struct cmd *lists[2] = { c->flight, c->pending };

	c->flight = c->flight_tail = c->pending = c->pending_tail = NULL;
	c->in_flight = 0;
	c->awaiting = NULL;
	for (int i = 0; i < 2; i++) {
		struct cmd *cmd = lists[i], *next;
		for (; cmd; cmd = next) {
			next = cmd->next;
			if (!silent && cmd->h.on_done)
				cmd->h.on_done(cmd->h.ud, NULL, err);
			free_cmd(cmd);
		}
	}
}

static void
finish_close(struct imap_client *c, int silent)
{
	const struct net_error *err = c->failed ? &c->err : NULL;
	struct net_error closed;

	if (err == NULL) {
		net_error_set(&closed, "protocol", "the connection to %s was closed", c->hostport);
		err = &closed;
	}
	if (!c->in_feed)
		teardown_io(c);
	if (c->ready) {
		imap_ready_fn ready = c->ready;
		c->ready = NULL;
		if (!silent)
			ready(c, err, c->ready_ud);
	}
	drain_commands(c, err, silent);
}

static void
client_fail(struct imap_client *c, const char *kind, const char *fmt, ...)
{
	va_list ap;

	if (c->state == ST_CLOSED)
		return;
	c->state = ST_CLOSED;
	c->failed = 1;
	snprintf(c->err.kind, sizeof(c->err.kind), "%s", kind);
	va_start(ap, fmt);
	vsnprintf(c->err.message, sizeof(c->err.message), fmt, ap);
	va_end(ap);
	log_debug(c->log_source, "imap connection failed kind=%s server=%s", c->err.kind, c->hostport);
	finish_close(c, 0);
}

static void
client_fail_with(struct imap_client *c, const struct net_error *e)
{
	client_fail(c, e->kind, "%s", e->message);
}

void
imap_client_close(struct imap_client *c, int silent)
{
	if (c->state == ST_CLOSED)
		return;
	c->state = ST_CLOSED;
	finish_close(c, silent);
}

void
imap_client_free(struct imap_client *c)
{
	if (c == NULL)
		return;
	if (c->state != ST_CLOSED)
		imap_client_close(c, 1);
	teardown_io(c);
	drain_commands(c, NULL, 1);
	if (c->timer)
		event_free(c->timer);
	imap_parser_free(c->parser);
	free(c->host);
	free(c->username);
	wipe_free(c->password);
	free(c->ca_file);
	free(c->log_source);
	free(c->caps);
	free(c);
}

/* ---- sending ----------------------------------------------------------- */

static void
write_part(struct imap_client *c, struct cmd *cmd, int i)
{
	if (i == 0) {
		bufferevent_write(c->bev, cmd->tag, strlen(cmd->tag));
		bufferevent_write(c->bev, " ", 1);
	}
	bufferevent_write(c->bev, cmd->parts[i], cmd->lens[i]);
	bufferevent_write(c->bev, "\r\n", 2);
	cmd->next_part = i + 1;
}

static void
flush(struct imap_client *c)
{
	while (c->pending && c->bev && c->awaiting == NULL && c->in_flight < c->pipeline) {
		struct cmd *cmd = c->pending;

		if (c->state != ST_READY && !cmd->internal)
			return;
		if ((c->state == ST_PREAUTH || c->state == ST_GREETING) && c->in_flight > 0)
			return;	/* the login steps go one at a time */
		c->pending = cmd->next;
		if (c->pending == NULL)
			c->pending_tail = NULL;
		cmd->next = NULL;
		snprintf(cmd->tag, sizeof(cmd->tag), "a%u", ++c->next_tag);
		if (c->flight_tail)
			c->flight_tail->next = cmd;
		else
			c->flight = cmd;
		c->flight_tail = cmd;
		c->in_flight++;
		write_part(c, cmd, 0);
		if (cmd->next_part < cmd->nparts || cmd->h.on_continue)
			c->awaiting = cmd;
	}
	rearm_timer(c);
}

static int
queue_cmd(struct imap_client *c, const char *const *parts, const size_t *lens, int nparts,
    const struct imap_handler *h, int internal)
{
	struct cmd *cmd;

	if (c->state == ST_CLOSED || nparts < 1)
		return -1;
	cmd = calloc(1, sizeof(*cmd));
	if (cmd == NULL)
		return -1;
	cmd->parts = calloc((size_t)nparts, sizeof(char *));
	cmd->lens = calloc((size_t)nparts, sizeof(size_t));
	if (cmd->parts == NULL || cmd->lens == NULL) {
		free(cmd->parts);
		free(cmd->lens);
		free(cmd);
		return -1;
	}
	for (int i = 0; i < nparts; i++) {
		cmd->parts[i] = malloc(lens[i] + 1);
		if (cmd->parts[i] == NULL) {
			cmd->nparts = i;
			free_cmd(cmd);
			return -1;
		}
		memcpy(cmd->parts[i], parts[i], lens[i]);
		cmd->parts[i][lens[i]] = '\0';
		cmd->lens[i] = lens[i];
	}
	cmd->nparts = nparts;
	cmd->internal = internal;
	if (h)
		cmd->h = *h;
	if (c->pending_tail)
		c->pending_tail->next = cmd;
	else
		c->pending = cmd;
	c->pending_tail = cmd;
	flush(c);
	return 0;
}

int
imap_client_send_parts(struct imap_client *c, const char *const *parts, const size_t *lens,
    int nparts, const struct imap_handler *h)
{
	return queue_cmd(c, parts, lens, nparts, h, 0);
}

static int
vsend(struct imap_client *c, const struct imap_handler *h, int internal, const char *fmt,
    va_list ap)
{
	char buf[8192];
	const char *part = buf;
	size_t len;
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);

	if (n < 0 || (size_t)n >= sizeof(buf))
		return -1;
	len = (size_t)n;
	return queue_cmd(c, &part, &len, 1, h, internal);
}

int
imap_client_send(struct imap_client *c, const struct imap_handler *h, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vsend(c, h, 0, fmt, ap);
	va_end(ap);
	return rc;
}

static int
send_internal(struct imap_client *c, const struct imap_handler *h, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int
send_internal(struct imap_client *c, const struct imap_handler *h, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vsend(c, h, 1, fmt, ap);
	va_end(ap);
	return rc;
}

int
imap_client_write(struct imap_client *c, const char *data, size_t len)
{
	if (c->state == ST_CLOSED || c->bev == NULL)
		return -1;
	bufferevent_write(c->bev, data, len);
	return 0;
}

/* ---- responses --------------------------------------------------------- */

static struct cmd *
take_flight(struct imap_client *c, const char *tag)
{
	struct cmd *prev = NULL;

	for (struct cmd *cmd = c->flight; cmd; prev = cmd, cmd = cmd->next) {
		if (strcmp(cmd->tag, tag) != 0)
			continue;
		if (prev)
			prev->next = cmd->next;
		else
			c->flight = cmd->next;
		if (c->flight_tail == cmd)
			c->flight_tail = prev;
		c->in_flight--;
		if (c->awaiting == cmd)
			c->awaiting = NULL;
		cmd->next = NULL;
		return cmd;
	}
	return NULL;
}

static void
route_untagged(struct imap_client *c, const struct imap_response *r)
{
	if (c->flight && c->flight->h.on_untagged)
		c->flight->h.on_untagged(c->flight->h.ud, r);
	else if (c->flight == NULL && c->idle_fn)
		c->idle_fn(c->idle_ud, r);
}

static int
on_response(void *ud, const struct imap_response *r)
{
	struct imap_client *c = ud;

	if (c->state == ST_CLOSED)
		return -1;
	if (c->state == ST_GREETING) {
		if (r->kind != IMAP_RESP_STATUS) {
			client_fail(c, "protocol", "%s did not greet like an IMAP server; is this "
			    "the IMAP port (993 for TLS, 143 for plain or STARTTLS)?", c->hostport);
			return -1;
		}
		note_code_caps(c, r);
		if (r->status == IMAP_STATUS_BYE) {
			client_fail(c, "protocol", "%s refused the session: %.*s", c->hostport,
			    (int)r->text_len, r->text);
			return -1;
		}
		if (r->status == IMAP_STATUS_PREAUTH) {
			c->state = ST_PREAUTH;
			log_info(c->log_source, "server pre-authenticated the session server=%s",
			    c->hostport);
			if (c->tls == IMAP_TLS_STARTTLS) {
				client_fail(c, "tls", "%s pre-authenticated the session before "
				    "STARTTLS; refusing to continue in plaintext", c->hostport);
				return -1;
			}
			c->username[0] = '\0';	/* no login */
		} else if (r->status != IMAP_STATUS_OK) {
			client_fail(c, "protocol", "unexpected greeting from %s: %.*s", c->hostport,
			    (int)r->text_len, r->text);
			return -1;
		} else {
			c->state = ST_PREAUTH;
		}
		start_login(c);
		return 0;
	}
	switch (r->kind) {
	case IMAP_RESP_TAGGED: {
		struct cmd *cmd = take_flight(c, r->tag);
		if (cmd == NULL) {
			client_fail(c, "protocol", "%s answered a command we did not send (tag %s)",
			    c->hostport, r->tag);
			return -1;
		}
		note_code_caps(c, r);
		if (cmd->h.on_done)
			cmd->h.on_done(cmd->h.ud, r, NULL);
		free_cmd(cmd);
		if (c->starttls_ok)
			return IMAP_PAUSE;	/* nothing after this is plaintext we trust */
		flush(c);
		return 0;
	}
	case IMAP_RESP_CONTINUE: {
		struct cmd *cmd = c->awaiting;
		if (cmd == NULL) {
			client_fail(c, "protocol", "%s sent a continuation request nobody asked for",
			    c->hostport);
			return -1;
		}
		if (cmd->next_part < cmd->nparts) {
			write_part(c, cmd, cmd->next_part);
			if (cmd->next_part >= cmd->nparts && !cmd->h.on_continue) {
				c->awaiting = NULL;
				flush(c);
			}
		} else if (cmd->h.on_continue) {
			cmd->h.on_continue(cmd->h.ud, r);
		}
		return 0;
	}
	case IMAP_RESP_STATUS:
		note_code_caps(c, r);
		if (r->status == IMAP_STATUS_BYE) {
			snprintf(c->bye, sizeof(c->bye), "%.*s", (int)r->text_len, r->text);
			snprintf(c->bye_code, sizeof(c->bye_code), "%s", r->code.name ? r->code.name : "");
		}
		if (r->code.id == IMAP_CODE_ALERT)
			log_warn(c->log_source, "server alert from %s: %.*s", c->hostport,
			    (int)r->text_len, r->text);
		route_untagged(c, r);
		return 0;
	case IMAP_RESP_DATA:
		if (r->kw == IMAP_KW_CAPABILITY && r->data)
			caps_set_from_node(c, r->data);
		route_untagged(c, r);
		return 0;
	}
	return 0;
}

static int
lit_begin(void *ud, const struct imap_literal_info *li)
{
	struct imap_client *c = ud;

	if (c->flight && c->flight->h.literal_begin)
		return c->flight->h.literal_begin(c->flight->h.ud, li);
	return IMAP_LIT_INLINE;
}

static int
lit_data(void *ud, const char *data, size_t len)
{
	struct imap_client *c = ud;

	if (c->flight && c->flight->h.literal_data)
		return c->flight->h.literal_data(c->flight->h.ud, data, len);
	return 0;
}

static int
lit_end(void *ud)
{
	struct imap_client *c = ud;

	if (c->flight && c->flight->h.literal_end)
		return c->flight->h.literal_end(c->flight->h.ud);
	return 0;
}

static void
parser_error(void *ud, int code, const char *msg)
{
	struct imap_client *c = ud;

	(void)code;
	if (c->state != ST_CLOSED && code != IMAP_ERR_ABORTED)
		client_fail(c, "protocol", "%s sent a response we cannot parse: %s", c->hostport, msg);
}

/* ---- STARTTLS and TLS -------------------------------------------------- */

static void read_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

static void
tls_established(struct imap_client *c)
{
	long vr = SSL_get_verify_result(c->ssl);

	tls_describe_session(c->ssl, c->security, sizeof(c->security));
	if (vr != X509_V_OK) {
		char fp[128];
		tls_peer_fingerprint(c->ssl, fp, sizeof(fp));
		log_warn(c->log_source, "accepting the certificate of %s although %s "
		    "(allow_insecure_cert = true); sha256 fingerprint %s", c->hostport,
		    tls_verify_reason(vr), fp);
	}
	log_debug(c->log_source, "tls established server=%s tls=\"%s\"", c->hostport, c->security);
}

static void
begin_starttls(struct imap_client *c)
{
	struct net_error err;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct bufferevent *tls;

	c->starttls_ok = 0;
	if (evbuffer_get_length(in) > 0) {
		client_fail(c, "tls", "%s sent data right after accepting STARTTLS (a possible "
		    "injection attack); closing the connection", c->hostport);
		return;
	}
	c->ssl = tls_new_client(c->host, c->allow_insecure, c->ca_file, c->fingerprint, &err);
	if (c->ssl == NULL) {
		client_fail_with(c, &err);
		return;
	}
	tls = bufferevent_openssl_filter_new(c->base, c->bev, c->ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tls == NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
		client_fail(c, "tls", "cannot start TLS with %s", c->hostport);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	c->bev = tls;
	c->state = ST_STARTTLS;
	imap_parser_reset(c->parser);
	free(c->caps);
	c->caps = NULL;	/* what the server said in plaintext no longer counts */
	bufferevent_set_max_single_read(tls, CLIENT_READ_MAX);
	bufferevent_setcb(tls, read_cb, NULL, event_cb, c);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
}

/* ---- login sequence ---------------------------------------------------- */

/* Logged in and capabilities known: hand over to the owner. */
static void
become_ready(struct imap_client *c)
{
	imap_ready_fn ready = c->ready;

	c->state = ST_READY;
	set_timer(c, 0);
	c->ready = NULL;
	if (ready)
		ready(c, NULL, c->ready_ud);
	flush(c);
}

/* base64 of RAW, which is wiped and freed (it holds credentials); NULL
 * when out of memory. The caller wipes and frees the result. */
static char *
b64_consume(unsigned char *raw, size_t raw_len, size_t *outlen)
{
	char *b64 = raw ? malloc(4 * ((raw_len + 2) / 3) + 1) : NULL;

	if (b64)
		*outlen = (size_t)EVP_EncodeBlock((unsigned char *)b64, raw, (int)raw_len);
	if (raw) {
		explicit_bzero(raw, raw_len);
		free(raw);
	}
	return b64;
}

/* base64("\0user\0password"), the AUTHENTICATE PLAIN response; NULL when
 * out of memory. The caller wipes and frees it. */
static char *
plain_b64(const struct imap_client *c, size_t *outlen)
{
	size_t ulen = strlen(c->username), plen = strlen(c->password);
	size_t raw_len = ulen + plen + 2;
	unsigned char *raw = malloc(raw_len);

	if (raw) {
		raw[0] = '\0';
		memcpy(raw + 1, c->username, ulen);
		raw[ulen + 1] = '\0';
		memcpy(raw + ulen + 2, c->password, plen);
	}
	return b64_consume(raw, raw_len, outlen);
}

/* base64 of the initial response of MECH ('O' OAUTHBEARER, RFC 7628:
 * "n,a=USER,^Ahost=HOST^Aport=PORT^Aauth=Bearer TOKEN^A^A", with ',' and
 * '=' in the user name escaped as RFC 5801 says; 'X' XOAUTH2:
 * "user=USER^Aauth=Bearer TOKEN^A^A"). NULL when out of memory. */
static char *
bearer_b64(const struct imap_client *c, int mech, size_t *outlen)
{
	size_t ulen = strlen(c->username), tlen = strlen(c->password);
	size_t cap = 3 * ulen + strlen(c->host) + tlen + 64, o = 0;
	unsigned char *raw = malloc(cap);
	int n;

	if (raw == NULL)
		return NULL;
	if (mech == 'O') {
		memcpy(raw, "n,a=", 4);
		o = 4;
		for (size_t i = 0; i < ulen; i++) {
			if (c->username[i] == ',' || c->username[i] == '=') {
				memcpy(raw + o, c->username[i] == ',' ? "=2C" : "=3D", 3);
				o += 3;
			} else {
				raw[o++] = (unsigned char)c->username[i];
			}
		}
		n = snprintf((char *)raw + o, cap - o, ",\001host=%s\001port=%d\001auth=Bearer ",
		    c->host, c->port);
	} else {
		n = snprintf((char *)raw, cap, "user=%s\001auth=Bearer ", c->username);
		o = 0;
	}
	o += (size_t)n;
	memcpy(raw + o, c->password, tlen);
	o += tlen;
	raw[o++] = 1;
	raw[o++] = 1;
	return b64_consume(raw, o, outlen);
}

/* Replaces each NEEDLE in the string BUF with "***". */
static void
hide(char *buf, const char *needle)
{
	size_t len = strlen(needle);
	char *p;

	if (len < 3)
		return;		/* as the log's scrubber: would blank ordinary words */
	while ((p = strstr(buf, needle)) != NULL) {
		memcpy(p, "***", 3);
		memmove(p + 3, p + len, strlen(p + len) + 1);
	}
}

/* A server may quote the failed command back ("NO bad AUTHENTICATE PLAIN
 * AGFsaWNl..."): its words go into errors, the status and the log, so the
 * credentials in any form we sent them are taken out first. */
static void
hide_credentials(const struct imap_client *c, char *said)
{
	size_t plen = strlen(c->password), len;
	char quoted[2100];
	char *b64 = c->bearer ? bearer_b64(c, c->mech, &len) : plain_b64(c, &len);

	if (b64) {
		hide(said, b64);
		explicit_bzero(b64, len);
		free(b64);
	}
	if (imap_format_astring(quoted, sizeof(quoted) - 1, c->password, plen, IMAP_FMT_STRING,
	    &len) == 0) {
		quoted[len] = '\0';
		hide(said, quoted);
		explicit_bzero(quoted, sizeof(quoted));
	}
	hide(said, c->password);
}

static void
auth_done(void *ud, const struct imap_response *r, const struct net_error *err)
{
	struct imap_client *c = ud;
	char said[700];

	if (err)
		return;
	if (r->status != IMAP_STATUS_OK) {
		imap_response_describe(r, said, sizeof(said));
		hide_credentials(c, said);
		if (r->code.id == IMAP_CODE_UNAVAILABLE || r->code.id == IMAP_CODE_THROTTLED ||
		    r->code.id == IMAP_CODE_LIMIT || r->code.id == IMAP_CODE_INUSE)
			client_fail(c, "protocol", "%s cannot log in %s right now: the server said "
			    "\"%s\"; it will be retried later", c->hostport, c->username, said);
		else if (c->bearer) {
			hide_credentials(c, c->challenge);
			client_fail(c, "auth", "%s refused the OAuth2 access token for %s "
			    "(AUTHENTICATE %s): the server said \"%s\"%s%s", c->hostport,
			    c->username, c->mech == 'O' ? "OAUTHBEARER" : "XOAUTH2", said,
			    c->challenge[0] ? "; its details: " : "", c->challenge);
		} else
			client_fail(c, "auth", "authentication failed for %s at %s: the server said "
			    "\"%s\". Double-check the username and password; if your provider "
			    "requires it (Gmail, iCloud, Yahoo, Outlook with two-factor sign-in), "
			    "use an App Password", c->username, c->hostport, said);
		return;
	}
	wipe_free(c->password);
	c->password = NULL;
	log_debug(c->log_source, "logged in server=%s user=%s auth=%s", c->hostport, c->username,
	    !c->bearer ? "password" : c->mech == 'O' ? "OAUTHBEARER" : "XOAUTH2");
	if (c->caps_from_code)
		become_ready(c);
	else
		request_caps(c);
}

/* A "+" after the bearer response is the server's error (a base64 JSON
 * such as {"status":"invalid_token"}): kept for the message, and answered
 * as the mechanism wants (XOAUTH2: an empty line; OAUTHBEARER, RFC 7628:
 * %x01) so that the server sends its tagged NO. */
static void
bearer_challenge(void *ud, const struct imap_response *r)
{
	struct imap_client *c = ud;
	unsigned char raw[sizeof(c->challenge) * 2];
	size_t n = r->text_len, o = 0;
	int len = 0;

	if (c->challenges++ > 0) {
		client_fail(c, "protocol", "%s sent a second challenge after the OAuth2 "
		    "access token; giving up on this login", c->hostport);
		return;
	}
	if (n > 0 && n < sizeof(raw) / 3 * 4 && n % 4 == 0)
		len = EVP_DecodeBlock(raw, (const unsigned char *)r->text, (int)n);
	if (len > 0) {
		while (len > 0 && raw[len - 1] == '\0')
			len--;	/* EVP_DecodeBlock counts the padding */
		for (int i = 0; i < len && o < sizeof(c->challenge) - 1; i++)
			c->challenge[o++] = raw[i] >= 0x20 && raw[i] < 0x7f ? (char)raw[i] : '?';
	}
	c->challenge[o] = '\0';
	if (c->mech == 'O')
		imap_client_write(c, "AQ==\r\n", 6);
	else
		imap_client_write(c, "\r\n", 2);
}

/* AUTHENTICATE OAUTHBEARER (preferred) or XOAUTH2, with SASL-IR when
 * offered. */
static void
do_bearer(struct imap_client *c, struct imap_handler *h)
{
	const char *name;
	size_t b64len;
	char *b64;

	if (c->auth != 'X' && imap_client_has_cap(c, "AUTH=OAUTHBEARER"))
		c->mech = 'O';
	else if (c->auth != 'O' && imap_client_has_cap(c, "AUTH=XOAUTH2"))
		c->mech = 'X';
	else {
		client_fail(c, "config", "%s offers %s for OAuth2 (its capabilities: %s); this "
		    "server wants a password (password = \"...\" or secret.*), not oauth2{...}",
		    c->hostport, c->auth == 'O' ? "no AUTHENTICATE OAUTHBEARER" : c->auth == 'X' ?
		    "no AUTHENTICATE XOAUTH2" : "neither AUTHENTICATE OAUTHBEARER nor XOAUTH2",
		    c->caps ? c->caps + 1 : "");
		return;
	}
	name = c->mech == 'O' ? "AUTHENTICATE OAUTHBEARER" : "AUTHENTICATE XOAUTH2";
	if ((b64 = bearer_b64(c, c->mech, &b64len)) == NULL) {
		client_fail(c, "protocol", "out of memory");
		return;
	}
	h->on_continue = bearer_challenge;
	c->challenges = 0;
	c->challenge[0] = '\0';
	if (imap_client_has_cap(c, "SASL-IR")) {
		size_t nlen = strlen(name), len = nlen + 1 + b64len;
		char *line = malloc(len);
		if (line) {
			const char *part = line;
			memcpy(line, name, nlen);
			line[nlen] = ' ';
			memcpy(line + nlen + 1, b64, b64len);
			queue_cmd(c, &part, &len, 1, h, 1);
			explicit_bzero(line, len);
			free(line);
		} else {
			client_fail(c, "protocol", "out of memory");
		}
	} else {
		const char *parts[2] = { name, b64 };
		size_t lens[2] = { strlen(name), b64len };
		queue_cmd(c, parts, lens, 2, h, 1);
	}
	explicit_bzero(b64, b64len);
	free(b64);
}

static void
do_login(struct imap_client *c)
{
	static const struct imap_handler h0;
	struct imap_handler h = h0;
	size_t ulen = strlen(c->username), plen = strlen(c->password);

	h.ud = c;
	h.on_done = auth_done;
	c->caps_from_code = 0;
	if (c->bearer) {
		do_bearer(c, &h);
		return;
	}
	if (c->auth == 'P' && !imap_client_has_cap(c, "AUTH=PLAIN")) {
		client_fail(c, "auth", "%s does not offer AUTHENTICATE PLAIN (auth = \"plain\")",
		    c->hostport);
		return;
	}
	if (c->auth != 'L' && imap_client_has_cap(c, "AUTH=PLAIN")) {
		size_t b64len;
		char *b64 = plain_b64(c, &b64len);
		if (b64 == NULL) {
			client_fail(c, "protocol", "out of memory");
			return;
		}
		int n = (int)b64len;
		if (imap_client_has_cap(c, "SASL-IR")) {
			static const char pre[] = "AUTHENTICATE PLAIN ";
			char *line = malloc(sizeof(pre) + (size_t)n);
			if (line) {
				const char *part = line;
				size_t len = sizeof(pre) - 1 + (size_t)n;
				memcpy(line, pre, sizeof(pre) - 1);
				memcpy(line + sizeof(pre) - 1, b64, (size_t)n);
				queue_cmd(c, &part, &len, 1, &h, 1);
				explicit_bzero(line, len);
				free(line);
			}
		} else {
			const char *parts[2] = { "AUTHENTICATE PLAIN", b64 };
			size_t lens[2] = { 18, (size_t)n };
			queue_cmd(c, parts, lens, 2, &h, 1);
		}
		explicit_bzero(b64, (size_t)n);
		free(b64);
		return;
	}
	if (imap_client_has_cap(c, "LOGINDISABLED")) {
		client_fail(c, "auth", "%s does not allow LOGIN on this connection "
		    "(LOGINDISABLED) and offers no AUTHENTICATE PLAIN; use tls = true or "
		    "tls = \"starttls\"", c->hostport);
		return;
	}
	/* LOGIN user password: each an atom, a quoted string, or a literal
	 * whose bytes start the next part (after the server's "+"). */
	const char *args[2] = { c->username, c->password };
	size_t alens[2] = { ulen, plen };
	size_t cap = 2 * (ulen + plen) + 96;
	char *buf = malloc(cap);
	const char *parts[3];
	size_t lens[3], o = 0, start = 0;
	int nparts = 0;

	if (buf == NULL) {
		client_fail(c, "protocol", "out of memory");
		return;
	}
	memcpy(buf, "LOGIN ", 6);
	o = 6;
	for (int i = 0; i < 2; i++) {
		size_t wlen;
		if (imap_format_astring(buf + o, cap - o, args[i], alens[i], 0, &wlen) == 0) {
			o += wlen;
		} else {
			imap_format_literal(buf + o, cap - o, alens[i], 0, 0, &wlen);
			o += wlen;
			parts[nparts] = buf + start;
			lens[nparts++] = o - start;
			start = o;
			memcpy(buf + o, args[i], alens[i]);
			o += alens[i];
		}
		if (i == 0)
			buf[o++] = ' ';
	}
	parts[nparts] = buf + start;
	lens[nparts++] = o - start;
	queue_cmd(c, parts, lens, nparts, &h, 1);
	explicit_bzero(buf, cap);
	free(buf);
}

static void
starttls_done(void *ud, const struct imap_response *r, const struct net_error *err)
{
	struct imap_client *c = ud;
	char said[700];

	if (err)
		return;
	if (r->status != IMAP_STATUS_OK) {
		imap_response_describe(r, said, sizeof(said));
		client_fail(c, "tls", "%s refused STARTTLS (\"%s\"); refusing to continue in "
		    "plaintext", c->hostport, said);
		return;
	}
	c->starttls_ok = 1;	/* switch once the parser stops after this response */
}

/* Where the login sequence goes next, each time capabilities are known. */
static void
start_login(struct imap_client *c)
{
	static const struct imap_handler h0;
	struct imap_handler h = h0;

	if (c->caps == NULL) {
		request_caps(c);
		return;
	}
	if (c->tls == IMAP_TLS_STARTTLS && c->ssl == NULL) {
		if (!imap_client_has_cap(c, "STARTTLS")) {
			client_fail(c, "tls", "%s does not offer STARTTLS, and tls = \"starttls\" "
			    "never falls back to plaintext. Use tls = true with the TLS port "
			    "(usually 993), or tls = false only for a server on a trusted network",
			    c->hostport);
			return;
		}
		h.ud = c;
		h.on_done = starttls_done;
		send_internal(c, &h, "STARTTLS");
		return;
	}
	if (c->username[0] == '\0') {	/* PREAUTH */
		become_ready(c);
		return;
	}
	do_login(c);
}

static void
caps_done(void *ud, const struct imap_response *r, const struct net_error *err)
{
	struct imap_client *c = ud;

	if (err)
		return;
	if (r->status != IMAP_STATUS_OK) {
		client_fail(c, "protocol", "%s refused CAPABILITY", c->hostport);
		return;
	}
	if (c->caps == NULL)
		c->caps = strdup(" IMAP4REV1 ");
	if (c->password == NULL && c->state == ST_PREAUTH) {
		become_ready(c);	/* capabilities re-read after login */
		return;
	}
	start_login(c);
}

static void
request_caps(struct imap_client *c)
{
	static const struct imap_handler h0;
	struct imap_handler h = h0;

	h.ud = c;
	h.on_done = caps_done;
	send_internal(c, &h, "CAPABILITY");
}

/* ---- I/O --------------------------------------------------------------- */

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct imap_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (c->state != ST_CLOSED && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		int rc;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		c->in_feed = 1;
		rc = imap_parser_feed(c->parser, v.iov_base, v.iov_len);
		c->in_feed = 0;
		if (rc == IMAP_PAUSE) {
			size_t used = imap_parser_consumed(c->parser);
			c->bytes_in += used;
			evbuffer_drain(in, used);
			if (c->state != ST_CLOSED && c->starttls_ok)
				begin_starttls(c);
			break;
		}
		if (rc < 0) {
			/* A receiver refused the data (disk full...): it has its
			 * own error; the connection cannot go on either way. */
			if (c->state != ST_CLOSED)
				client_fail(c, "protocol", "reading from %s stopped: %s", c->hostport,
				    imap_parser_errmsg(c->parser));
			break;
		}
		c->bytes_in += v.iov_len;
		evbuffer_drain(in, v.iov_len);
	}
	if (c->state == ST_CLOSED) {
		teardown_io(c);
		return;
	}
	rearm_timer(c);
}

/* OpenSSL 3 reports a TCP close without close_notify as an error, which
 * libevent's dirty-shutdown allowance does not recognise: after the
 * handshake it is the same lost connection as a plain EOF, not a TLS fault. */
static int
tls_cut_short(unsigned long ossl)
{
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
	return ossl != 0 && ERR_GET_LIB(ossl) == ERR_LIB_SSL &&
	    ERR_GET_REASON(ossl) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
#else
	(void)ossl;
	return 0;
#endif
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct imap_client *c = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == ST_TLS) {
			tls_established(c);
			c->state = ST_GREETING;
		} else if (c->state == ST_STARTTLS) {
			tls_established(c);
			c->state = ST_PREAUTH;
			request_caps(c);
		}
		return;
	}
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
		unsigned long ossl = c->bev ? bufferevent_get_openssl_error(c->bev) : 0;
		int e = EVUTIL_SOCKET_ERROR();

		if (c->state == ST_TLS || c->state == ST_STARTTLS) {
			struct net_error err;
			tls_classify_failure(c->ssl, ossl, c->hostport, &err);
			client_fail_with(c, &err);
		} else if (c->bye[0]) {
			client_fail(c, "protocol", "%s closed the connection: BYE %s%s%s%s", c->hostport,
			    c->bye_code[0] ? "[" : "", c->bye_code, c->bye_code[0] ? "] " : "", c->bye);
		} else if ((what & BEV_EVENT_EOF) || tls_cut_short(ossl)) {
			client_fail(c, "protocol", "%s closed the connection unexpectedly%s",
			    c->hostport, c->state == ST_GREETING ? " before greeting" : "");
		} else if (ossl) {
			char buf[256];
			ERR_error_string_n(ossl, buf, sizeof(buf));
			client_fail(c, "tls", "TLS error on the connection to %s: %s", c->hostport, buf);
		} else {
			client_fail(c, "protocol", "the connection to %s failed: %s", c->hostport,
			    e ? strerror(e) : "closed");
		}
		teardown_io(c);
	}
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct imap_client *c = arg;

	(void)fd;
	(void)what;
	if (c->state == ST_READY)
		client_fail(c, "timeout", "%s did not answer for %.0f seconds; the connection "
		    "is given up and will be retried", c->hostport, c->command_timeout);
	else if (c->state == ST_TLS || c->state == ST_STARTTLS)
		client_fail(c, "timeout", "the TLS handshake with %s did not finish within "
		    "%.0f seconds: is this a TLS port?", c->hostport, c->connect_timeout);
	else
		client_fail(c, "timeout", "%s did not complete the IMAP greeting and login "
		    "within %.0f seconds", c->hostport, c->connect_timeout);
	teardown_io(c);
}

static void
connected(evutil_socket_t fd, const struct net_error *err, void *ud)
{
	struct imap_client *c = ud;
	struct net_error terr;

	c->nc = NULL;
	if (err) {
		client_fail_with(c, err);
		return;
	}
	if (c->tls == IMAP_TLS_IMPLICIT) {
		c->ssl = tls_new_client(c->host, c->allow_insecure, c->ca_file, c->fingerprint, &terr);
		if (c->ssl == NULL) {
			evutil_closesocket(fd);
			client_fail_with(c, &terr);
			return;
		}
		c->bev = bufferevent_openssl_socket_new(c->base, fd, c->ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (c->bev)
			bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
		c->state = ST_TLS;
	} else {
		c->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		c->state = ST_GREETING;
		snprintf(c->security, sizeof(c->security), "plaintext");
		if (c->tls == IMAP_TLS_NONE)
			log_warn(c->log_source, "connecting to %s without TLS (tls = false): the "
			    "password and the mail travel unencrypted", c->hostport);
	}
	if (c->bev == NULL) {
		client_fail(c, "tls", "cannot set up the connection to %s", c->hostport);
		return;
	}
	bufferevent_set_max_single_read(c->bev, CLIENT_READ_MAX);
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

struct imap_client *
imap_client_connect(struct event_base *base, const struct imap_client_opts *o,
    imap_ready_fn ready, void *ud)
{
	struct imap_client *c = calloc(1, sizeof(*c));
	struct imap_callbacks cb;

	if (c == NULL)
		return NULL;
	c->base = base;
	c->host = strdup(o->host);
	c->username = strdup(o->username ? o->username : "");
	c->bearer = o->bearer != NULL;
	c->password = strdup(o->bearer ? o->bearer : o->password ? o->password : "");
	c->ca_file = dup_or_null(o->ca_file);
	c->log_source = dup_or_null(o->log_source);
	c->port = o->port;
	c->tls = o->tls;
	c->allow_insecure = o->allow_insecure;
	c->connect_timeout = o->connect_timeout > 0 ? o->connect_timeout : 30;
	c->command_timeout = o->command_timeout > 0 ? o->command_timeout : 120;
	c->pipeline = o->pipeline > 0 ? o->pipeline : 1;
	c->auth = o->auth == NULL ? 0 : strcmp(o->auth, "login") == 0 ? 'L' :
	    strcmp(o->auth, "oauthbearer") == 0 ? 'O' : strcmp(o->auth, "xoauth2") == 0 ? 'X' : 'P';
	c->ready = ready;
	c->ready_ud = ud;
	snprintf(c->hostport, sizeof(c->hostport), strchr(o->host, ':') ? "[%s]:%d" : "%s:%d",
	    o->host, o->port);
	memset(&cb, 0, sizeof(cb));
	cb.ud = c;
	cb.on_response = on_response;
	cb.literal_begin = lit_begin;
	cb.literal_data = lit_data;
	cb.literal_end = lit_end;
	cb.on_error = parser_error;
	c->parser = imap_parser_new(&cb, NULL);
	c->timer = evtimer_new(base, timer_cb, c);
	if (c->host == NULL || c->username == NULL || c->password == NULL ||
	    c->parser == NULL || c->timer == NULL) {
		imap_client_free(c);
		return NULL;
	}
	c->state = ST_CONNECTING;
	set_timer(c, c->connect_timeout + 1);	/* net_connect has its own, shorter */
	c->nc = net_connect_start(base, o->host, o->port, c->connect_timeout, connected, c);
	if (c->nc == NULL) {
		imap_client_free(c);
		return NULL;
	}
	return c;
}

void
imap_client_set_idle_handler(struct imap_client *c,
    void (*fn)(void *ud, const struct imap_response *r), void *ud)
{
	c->idle_fn = fn;
	c->idle_ud = ud;
}

void
imap_client_set_idling(struct imap_client *c, int idling)
{
	c->idling = idling;
	rearm_timer(c);
}

int
imap_client_is_open(const struct imap_client *c)
{
	return c->state == ST_READY;
}

int
imap_client_in_flight(const struct imap_client *c)
{
	return c->in_flight + (c->pending != NULL);
}

const char *
imap_client_hostport(const struct imap_client *c)
{
	return c->hostport;
}

const struct net_error *
imap_client_error(const struct imap_client *c)
{
	return c->failed ? &c->err : NULL;
}

const char *
imap_client_bye(const struct imap_client *c)
{
	return c->bye;
}

const char *
imap_client_bye_code(const struct imap_client *c)
{
	return c->bye_code;
}

uint64_t
imap_client_bytes_in(const struct imap_client *c)
{
	return c->bytes_in;
}

const char *
imap_client_security(const struct imap_client *c)
{
	return c->security[0] ? c->security : "none";
}
