/*
 * One connection of the IMAP view: bytes to the framer, commands one at a
 * time (reading stops while one waits: a FETCH for the output to drain, a
 * failed login for its delay), the not-authenticated state (CAPABILITY,
 * ID, STARTTLS, LOGIN, AUTHENTICATE PLAIN) and the output helpers.
 *
 * Passwords: compared as PBKDF2 hashes with CRYPTO_memcmp, an unknown
 * user against a dummy hash so both cost the same; a failed login is
 * answered after SERVE_LOGIN_DELAY_MS and counted for its address; the
 * log names the user and the address, never what was typed as password.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"
#include "serve/session.h"

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/* ---- output -------------------------------------------------------------------- */

void
sess_printf(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
}

void
sess_write(struct session *s, const void *data, size_t len)
{
	bufferevent_write(s->bev, data, len);
}

size_t
sess_pending(struct session *s)
{
	return evbuffer_get_length(bufferevent_get_output(s->bev));
}

void
put_string(struct evbuffer *out, const char *str, size_t len)
{
	int quote = len < 1024;

	for (size_t i = 0; quote && i < len; i++) {
		unsigned char c = (unsigned char)str[i];
		if (c == '\r' || c == '\n' || c == '\0' || c >= 0x80)
			quote = 0;
	}
	if (!quote) {
		evbuffer_add_printf(out, "{%zu}\r\n", len);
		evbuffer_add(out, str, len);
		return;
	}
	evbuffer_add(out, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		if (str[i] == '"' || str[i] == '\\')
			evbuffer_add(out, "\\", 1);
		evbuffer_add(out, str + i, 1);
	}
	evbuffer_add(out, "\"", 1);
}

void
put_nstring(struct evbuffer *out, const char *str)
{
	if (str == NULL)
		evbuffer_add(out, "NIL", 3);
	else
		put_string(out, str, strlen(str));
}

void
sess_astring(struct session *s, const char *str, size_t len)
{
	put_string(bufferevent_get_output(s->bev), str, len);
}

void
sess_nstring(struct session *s, const char *str)
{
	put_nstring(bufferevent_get_output(s->bev), str);
}

/* ---- life -------------------------------------------------------------------------- */

static void
capabilities(struct session *s, struct evbuffer *out)
{
	evbuffer_add_printf(out, "IMAP4rev1 LITERAL+ SASL-IR ID IDLE NAMESPACE UNSELECT CHILDREN "
	    "SPECIAL-USE");
	if (s->state == ST_NOAUTH) {
		if (s->srv->tls && !s->tls)
			evbuffer_add_printf(out, " STARTTLS");
		if (s->tls || s->srv->plaintext_ok)
			evbuffer_add_printf(out, " AUTH=PLAIN");
		else
			evbuffer_add_printf(out, " LOGINDISABLED");
	}
}

void
session_new(struct server *srv, int fd, const char *addr)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL || (s->framer = imapd_framer_new()) == NULL) {
		free(s);
		evutil_closesocket(fd);
		return;
	}
	s->srv = srv;
	snprintf(s->addr, sizeof(s->addr), "%s", addr);
	s->readonly = 1;
	if (srv->implicit_tls) {
		SSL *ssl = SSL_new(srv->tls);
		s->bev = ssl ? bufferevent_openssl_socket_new(srv->base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE) : NULL;
		if (s->bev == NULL && ssl)
			SSL_free(ssl);
		s->tls = 1;
	} else {
		s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	if (s->bev == NULL) {
		imapd_framer_free(s->framer);
		free(s);
		evutil_closesocket(fd);
		return;
	}
	if (s->tls)
		bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;
	srv->nsessions++;
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	/* A waiting FETCH goes on once half of what it queued is sent. */
	bufferevent_setwatermark(s->bev, EV_WRITE, SERVE_OUT_HIGH / 2, 0);
	{
		struct timeval tv = { SERVE_AUTOLOGOUT, 0 };
		bufferevent_set_timeouts(s->bev, &tv, NULL);
	}
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	log_debug(NULL, "imap view: connection addr=%s", s->addr);
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_add_printf(out, "* OK [CAPABILITY ");
	capabilities(s, out);
	evbuffer_add_printf(out, "] MyEmailVault archive (read-only) ready\r\n");
}

void
session_close(struct session *s, const char *bye)
{
	struct server *srv = s->srv;

	if (bye && s->bev && !s->closing) {
		/* Best effort: the socket may be gone already. */
		sess_printf(s, "* BYE %s\r\n", bye);
		bufferevent_flush(s->bev, EV_WRITE, BEV_FLUSH);
	}
	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	srv->nsessions--;
	if (s->job)
		fetch_free(s->job);
	if (s->timer)
		event_free(s->timer);
	mailbox_free(s->mbox);
	imapd_framer_free(s->framer);
	if (s->bev)
		bufferevent_free(s->bev);
	free(s);
}

/* After BYE: close once the output is written (write_cb fires when all
 * of it is: the low watermark goes to 0). */
void
sess_close_when_written(struct session *s)
{
	s->closing = 1;
	bufferevent_disable(s->bev, EV_READ);
	bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (what & BEV_EVENT_TIMEOUT) {
		session_close(s, "autologout: idle for too long");
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		log_debug(NULL, "imap view: connection closed addr=%s", s->addr);
		session_close(s, NULL);
	}
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (s->closing) {
		if (sess_pending(s) == 0)
			session_close(s, NULL);
		return;
	}
	if (s->wait == WAIT_FETCH && s->job && fetch_continue(s->job)) {
		fetch_free(s->job);
		s->job = NULL;
		s->wait = WAIT_NONE;
		sess_resume(s);
	}
}

/* ---- logging in ------------------------------------------------------------------ */

static void
login_delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	sess_printf(s, "%s %s\r\n", s->tag, s->login_reply);
	s->wait = WAIT_NONE;
	sess_resume(s);
}

/* Checks USER and PASSWORD and answers TAG (now, or after the delay). */
static void
login(struct session *s, const char *tag, const char *user, const char *pw, size_t pwlen,
    const char *mech)
{
	static unsigned char dummy_salt[SERVE_SALT];
	const struct serve_user *u = server_find_user(s->srv, user);
	unsigned char h[SERVE_HASH];
	char qu[160];
	const char *why = NULL;

	log_quote(qu, sizeof(qu), user);
	if (!server_login_allowed(s->srv, s->addr)) {
		why = "too many failures from this address";
		snprintf(s->login_reply, sizeof(s->login_reply), "NO [UNAVAILABLE] too many failed "
		    "logins from your address: wait %d minutes", SERVE_FAIL_WINDOW / 60);
	} else if (serve_hash_password(pw, pwlen, u ? u->salt : dummy_salt, h) < 0) {
		why = "internal error";
		snprintf(s->login_reply, sizeof(s->login_reply), "NO [UNAVAILABLE] internal error");
	} else if (u == NULL || CRYPTO_memcmp(h, u->hash, SERVE_HASH) != 0) {
		why = u ? "wrong password" : "unknown user";
		snprintf(s->login_reply, sizeof(s->login_reply),
		    "NO [AUTHENTICATIONFAILED] wrong user name or password");
	}
	OPENSSL_cleanse(h, sizeof(h));
	if (why == NULL) {
		s->user = u;
		s->state = ST_AUTH;
		s->srv->logins++;
		log_info(NULL, "imap view: login user=%s addr=%s mechanism=%s tls=%s", qu, s->addr, mech,
		    s->tls ? "yes" : "no");
		struct evbuffer *out = bufferevent_get_output(s->bev);
		evbuffer_add_printf(out, "%s OK [CAPABILITY ", tag);
		capabilities(s, out);
		evbuffer_add_printf(out, "] logged in, read-only\r\n");
		return;
	}
	if (strcmp(why, "too many failures from this address") != 0)
		server_login_failed(s->srv, s->addr);
	log_warn(NULL, "imap view: login failed user=%s addr=%s mechanism=%s reason=\"%s\"", qu,
	    s->addr, mech, why);
	snprintf(s->tag, sizeof(s->tag), "%s", tag);
	s->wait = WAIT_LOGIN;
	if (s->timer == NULL)
		s->timer = evtimer_new(s->srv->base, login_delay_cb, s);
	else {
		event_free(s->timer);
		s->timer = evtimer_new(s->srv->base, login_delay_cb, s);
	}
	struct timeval tv = { SERVE_LOGIN_DELAY_MS / 1000, (SERVE_LOGIN_DELAY_MS % 1000) * 1000 };
	evtimer_add(s->timer, &tv);
}

/* AUTHENTICATE PLAIN's response: base64 of authzid NUL authcid NUL password. */
static void
sasl_plain(struct session *s, const char *tag, const char *b64, size_t len)
{
	unsigned char *raw;
	int n;

	if (len == 1 && b64[0] == '*') {
		sess_printf(s, "%s BAD authentication cancelled\r\n", tag);
		return;
	}
	if (len > 4096 || (raw = malloc(len + 4)) == NULL) {
		sess_printf(s, "%s BAD response too long\r\n", tag);
		return;
	}
	n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len);
	if (n >= 0) {
		/* EVP_DecodeBlock counts the padding as bytes. */
		if (len >= 1 && b64[len - 1] == '=')
			n--;
		if (len >= 2 && b64[len - 2] == '=')
			n--;
	}
	unsigned char *z1 = n > 0 ? memchr(raw, '\0', (size_t)n) : NULL;
	unsigned char *z2 = z1 ? memchr(z1 + 1, '\0', (size_t)(raw + n - z1 - 1)) : NULL;
	if (len % 4 != 0 || n < 0 || z2 == NULL || memchr(z2 + 1, '\0', (size_t)(raw + n - z2 - 1))) {
		OPENSSL_cleanse(raw, len + 4);
		free(raw);
		sess_printf(s, "%s BAD malformed PLAIN response\r\n", tag);
		return;
	}
	char *authz = (char *)raw, *user = (char *)z1 + 1, *pw = (char *)z2 + 1;
	size_t pwlen = (size_t)(raw + n - (unsigned char *)pw);
	if (*authz && strcmp(authz, user) != 0) {
		sess_printf(s, "%s NO [AUTHORIZATIONFAILED] acting as another user is not supported\r\n", tag);
	} else {
		login(s, tag, user, pw, pwlen, "PLAIN");
	}
	OPENSSL_cleanse(raw, len + 4);
	free(raw);
}

static void
starttls(struct session *s, const char *tag)
{
	SSL *ssl;
	struct bufferevent *tls;

	if (s->srv->tls == NULL || s->tls) {
		sess_printf(s, "%s BAD STARTTLS is not offered here\r\n", tag);
		return;
	}
	sess_printf(s, "%s OK begin TLS now\r\n", tag);
	bufferevent_flush(s->bev, EV_WRITE, BEV_FLUSH);
	/* Anything the client pipelined after STARTTLS is plaintext that
	 * must not count as having come over TLS. */
	evbuffer_drain(bufferevent_get_input(s->bev), evbuffer_get_length(bufferevent_get_input(s->bev)));
	if ((ssl = SSL_new(s->srv->tls)) == NULL) {
		sess_close_when_written(s);
		return;
	}
	tls = bufferevent_openssl_filter_new(s->srv->base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
	    BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		SSL_free(ssl);
		sess_close_when_written(s);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	s->bev = tls;
	s->tls = 1;
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	bufferevent_setwatermark(s->bev, EV_WRITE, SERVE_OUT_HIGH / 2, 0);
	struct timeval tv = { SERVE_AUTOLOGOUT, 0 };
	bufferevent_set_timeouts(s->bev, &tv, NULL);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static int
string_arg(const struct imapd_node *n, const char **out)
{
	if (!imapd_is_astring(n) || strlen(n->s) != n->len)
		return -1;
	*out = n->s;
	return 0;
}

/* Commands of every state; 1 when CMD was one. */
static int
any_state(struct session *s, struct imapd_cmd *cmd)
{
	const char *tag = cmd->tag;

	if (strcmp(cmd->name, "CAPABILITY") == 0) {
		struct evbuffer *out = bufferevent_get_output(s->bev);
		evbuffer_add_printf(out, "* CAPABILITY ");
		capabilities(s, out);
		evbuffer_add_printf(out, "\r\n%s OK CAPABILITY done\r\n", tag);
	} else if (strcmp(cmd->name, "NOOP") == 0 && s->state == ST_NOAUTH) {
		sess_printf(s, "%s OK NOOP done\r\n", tag);
	} else if (strcmp(cmd->name, "LOGOUT") == 0) {
		sess_printf(s, "* BYE logging out\r\n%s OK LOGOUT done\r\n", tag);
		s->state = ST_LOGOUT;
		sess_close_when_written(s);
	} else if (strcmp(cmd->name, "ID") == 0) {
		sess_printf(s, "* ID (\"name\" \"MyEmailVault\" \"version\" \"%s\")\r\n%s OK ID done\r\n",
		    EMAILVAULT_VERSION, tag);
	} else {
		return 0;
	}
	return 1;
}

static void
not_authenticated(struct session *s, struct imapd_cmd *cmd)
{
	const char *tag = cmd->tag, *user, *pw;

	if (strcmp(cmd->name, "STARTTLS") == 0) {
		starttls(s, tag);
	} else if (strcmp(cmd->name, "LOGIN") == 0 || strcmp(cmd->name, "AUTHENTICATE") == 0) {
		if (!s->tls && !s->srv->plaintext_ok) {
			sess_printf(s, "%s NO [PRIVACYREQUIRED] use STARTTLS first\r\n", tag);
		} else if (strcmp(cmd->name, "LOGIN") == 0) {
			if (imapd_nargs(cmd) != 2 || string_arg(imapd_arg(cmd, 0), &user) < 0 ||
			    !imapd_is_astring(imapd_arg(cmd, 1)))
				sess_printf(s, "%s BAD LOGIN needs a user name and a password\r\n", tag);
			else {
				pw = imapd_arg(cmd, 1)->s;
				login(s, tag, user, pw, imapd_arg(cmd, 1)->len, "LOGIN");
			}
		} else {
			const struct imapd_node *mech = imapd_arg(cmd, 0), *ir = imapd_arg(cmd, 1);
			if (!imapd_atom_is(mech, "PLAIN")) {
				sess_printf(s, "%s NO only AUTHENTICATE PLAIN is offered\r\n", tag);
			} else if (ir) {
				if (ir->type != IMAPD_ATOM)
					sess_printf(s, "%s BAD malformed initial response\r\n", tag);
				else if (strcmp(ir->s, "=") == 0)
					sess_printf(s, "%s BAD an empty PLAIN response\r\n", tag);
				else
					sasl_plain(s, tag, ir->s, ir->len);
			} else {
				snprintf(s->tag, sizeof(s->tag), "%s", tag);
				s->wait = WAIT_SASL;
				sess_printf(s, "+ \r\n");
			}
		}
	} else {
		sess_printf(s, "%s BAD log in first (LOGIN or AUTHENTICATE PLAIN)\r\n", tag);
	}
}

/* One complete command (or a line the waiting command wanted). */
static void
handle(struct session *s, const char *buf, size_t len)
{
	struct imapd_cmd cmd;
	char err[128];

	if (s->wait == WAIT_SASL) {
		s->wait = WAIT_NONE;
		sasl_plain(s, s->tag, buf, len);
		return;
	}
	if (s->wait == WAIT_IDLE) {
		if (len == 4 && strncasecmp(buf, "DONE", 4) == 0) {
			s->wait = WAIT_NONE;
			if (s->timer)
				event_del(s->timer);
			sess_printf(s, "%s OK IDLE done\r\n", s->tag);
		} else {
			s->wait = WAIT_NONE;
			if (s->timer)
				event_del(s->timer);
			sess_printf(s, "%s BAD expected DONE\r\n", s->tag);
		}
		return;
	}
	if (imapd_parse(buf, len, &cmd, err, sizeof(err)) < 0) {
		sess_printf(s, "%s BAD %s\r\n", cmd.tag, err);
		imapd_cmd_free(&cmd);
		return;
	}
	if (!any_state(s, &cmd)) {
		if (s->state == ST_NOAUTH)
			not_authenticated(s, &cmd);
		else if (!commands_dispatch(s, &cmd))
			sess_printf(s, "%s BAD unknown command %s\r\n", cmd.tag, cmd.name);
	}
	imapd_cmd_free(&cmd);
}

/* Takes commands from the input while none waits. */
static void
process(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);

	while (s->wait == WAIT_NONE || s->wait == WAIT_SASL || s->wait == WAIT_IDLE) {
		size_t avail = evbuffer_get_contiguous_space(in), used = 0;
		if (avail == 0 || s->closing)
			break;
		const char *data = (const char *)evbuffer_pullup(in, (ssize_t)avail);
		enum imapd_status st = imapd_framer_feed(s->framer, data, avail, &used);
		evbuffer_drain(in, used);
		if (st == IMAPD_CONTINUE) {
			sess_printf(s, "+ go ahead\r\n");
		} else if (st == IMAPD_ERROR) {
			const char *tag, *why = imapd_framer_error(s->framer, &tag);
			sess_printf(s, "%s BAD %s\r\n", tag, why);
			if (s->wait == WAIT_SASL || s->wait == WAIT_IDLE)
				s->wait = WAIT_NONE;
		} else if (st == IMAPD_COMMAND) {
			size_t len;
			const char *buf = imapd_framer_take(s->framer, &len);
			handle(s, buf, len);
			/* Nothing in handle frees S; a LOGOUT closes once
			 * its BYE is written (write_cb). */
			if (s->closing) {
				if (sess_pending(s) == 0)
					session_close(s, NULL);
				return;
			}
		}
	}
	/* Reading stops while a command waits, so the input stays bounded. */
	if (s->wait == WAIT_NONE || s->wait == WAIT_SASL || s->wait == WAIT_IDLE)
		bufferevent_enable(s->bev, EV_READ);
	else
		bufferevent_disable(s->bev, EV_READ);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	process(arg);
}

void
sess_resume(struct session *s)
{
	process(s);
}
