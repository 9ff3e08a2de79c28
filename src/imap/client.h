#ifndef EMAILVAULT_IMAP_CLIENT_H
#define EMAILVAULT_IMAP_CLIENT_H
/*
 * An IMAP client connection over a libevent bufferevent: connect (implicit
 * TLS, STARTTLS or plaintext), greeting, capabilities, authentication, then
 * a command queue with tags, a configurable pipeline depth and literal
 * streaming. Every failure is reported once as a struct net_error.
 *
 * Commands are queued with imap_client_send(); at most `pipeline` are in
 * flight, and none is sent while an earlier one waits for a "+"
 * continuation. Untagged responses and literals go to the oldest command in
 * flight (with pipelined FETCHes of one batch that is the batch's owner),
 * or to the client's idle handler when nothing is in flight.
 */
#include <stddef.h>
#include <stdint.h>

#include "imap/parser.h"
#include "net/error.h"

struct event_base;
struct imap_client;

enum imap_tls_mode { IMAP_TLS_IMPLICIT, IMAP_TLS_STARTTLS, IMAP_TLS_NONE };

struct imap_client_opts {
	const char *host;
	int port;
	enum imap_tls_mode tls;
	int allow_insecure;
	const char *ca_file;		/* NULL: the system store */
	const char *username;
	const char *password;		/* copied, wiped after login */
	const char *bearer;		/* an OAuth2 access token instead of the password
					 * (AUTHENTICATE OAUTHBEARER or XOAUTH2); copied, wiped */
	double connect_timeout;		/* seconds; 0: 30 */
	double command_timeout;		/* seconds without a byte while waiting; 0: 120 */
	int pipeline;			/* commands in flight; 0: 1 */
	const char *auth;		/* "login", "plain" or NULL: PLAIN if offered; with
					 * BEARER "oauthbearer", "xoauth2" or NULL: OAUTHBEARER
					 * if offered, else XOAUTH2 */
	const char *log_source;		/* source id for log lines, or NULL */
};

struct imap_handler {
	void *ud;
	/* Untagged data and status responses while this command is the oldest
	 * in flight. */
	void (*on_untagged)(void *ud, const struct imap_response *r);
	/* A "+" for this command when it has no more segments to send (IDLE). */
	void (*on_continue)(void *ud, const struct imap_response *r);
	/* Literal streaming, as in struct imap_callbacks; NULL: kept inline. */
	int (*literal_begin)(void *ud, const struct imap_literal_info *li);
	int (*literal_data)(void *ud, const char *data, size_t len);
	int (*literal_end)(void *ud);
	/* The end: the tagged response, or ERR if the connection failed first. */
	void (*on_done)(void *ud, const struct imap_response *tagged, const struct net_error *err);
};

typedef void (*imap_ready_fn)(struct imap_client *c, const struct net_error *err, void *ud);

/* Starts connecting; READY is called once: logged in, or failed. */
struct imap_client *imap_client_connect(struct event_base *base,
    const struct imap_client_opts *opts, imap_ready_fn ready, void *ud);

/* Closes the connection now; pending commands end with a "closed" error
 * (their on_done is called unless SILENT). The struct stays valid until
 * imap_client_free. */
void imap_client_close(struct imap_client *c, int silent);
void imap_client_free(struct imap_client *c);

/*
 * Queues a command. PARTS are the command text after the tag, split where a
 * synchronizing literal's bytes must wait for "+": part i ends with "{n}"
 * (CRLF added), part i+1 starts with the literal bytes. NPARTS >= 1; each
 * part has its length (they may hold any bytes). 0, or -1 if the connection
 * is closed.
 */
int imap_client_send_parts(struct imap_client *c, const char *const *parts,
    const size_t *lens, int nparts, const struct imap_handler *h);
/* A command without literals: printf-style text after the tag. */
int imap_client_send(struct imap_client *c, const struct imap_handler *h,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Sends raw bytes (DONE ending an IDLE). */
int imap_client_write(struct imap_client *c, const char *data, size_t len);

/* Untagged responses that arrive while no command is in flight. */
void imap_client_set_idle_handler(struct imap_client *c,
    void (*fn)(void *ud, const struct imap_response *r), void *ud);
/* Turns the read timeout off while idling (IDLE may be silent for long). */
void imap_client_set_idling(struct imap_client *c, int idling);

int imap_client_has_cap(const struct imap_client *c, const char *cap);
/* Capabilities, space-separated, as the server last listed them. */
const char *imap_client_caps(const struct imap_client *c);
int imap_client_is_open(const struct imap_client *c);
int imap_client_in_flight(const struct imap_client *c);
const char *imap_client_hostport(const struct imap_client *c);
/* The error that closed the connection, or NULL. */
const struct net_error *imap_client_error(const struct imap_client *c);
/* The last untagged BYE's text and code name ("" if none): a reason to back off. */
const char *imap_client_bye(const struct imap_client *c);
const char *imap_client_bye_code(const struct imap_client *c);
/* Bytes received so far (for rates). */
uint64_t imap_client_bytes_in(const struct imap_client *c);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384", or "plaintext". */
const char *imap_client_security(const struct imap_client *c);

/* The human text of a tagged NO/BAD: "[CODE] text". */
void imap_response_describe(const struct imap_response *r, char *buf, size_t len);

#endif
