#ifndef EMAILVAULT_SERVE_SERVE_H
#define EMAILVAULT_SERVE_SERVE_H
/*
 * The IMAP view: a read-only IMAP server over the archive, on the engine's
 * event loop (docs/imap-view.md). What the files of src/serve/ share:
 *
 *   listener.c   the server: listening socket, TLS context, users, the
 *                per-address login failures
 *   session.c    one connection: I/O, framing, the state machine, login
 *   commands.c   the commands of the authenticated states
 *   mailbox.c    the mailbox tree and its persisted UIDs (archive.db)
 *   fetch.c      FETCH, streamed from the store with backpressure
 *   structure.c  a message's MIME tree: ENVELOPE, BODYSTRUCTURE, BODY[n.m]
 *   search.c     SEARCH keys as SQL (and the full-text index)
 *   lua_serve.c  vault.serve, what lua/serve.lua drives
 *
 * Policy (who may log in, which sources they see, when to listen) is
 * lua/serve.lua's; this is the mechanism.
 */
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <openssl/ssl.h>
#include <sqlite3.h>

#include "serve/imapd_args.h"
#include "serve/imapd_parse.h"

#define SERVE_SALT		16
#define SERVE_HASH		32
#define SERVE_PBKDF2_ROUNDS	10000
#define SERVE_LOGIN_DELAY_MS	1000	/* before a failed login's answer */
#define SERVE_FAIL_MAX		5	/* failures from one address ... */
#define SERVE_FAIL_WINDOW	600	/* ... within this many seconds: refused */
#define SERVE_FAIL_TABLE	1024	/* addresses remembered */
#define SERVE_OUT_HIGH		(256 * 1024)	/* output held before a FETCH waits */
#define SERVE_CHUNK		(64 * 1024)
#define SERVE_MAX_SESSIONS	256
#define SERVE_IDLE_POLL_MS	1000
#define SERVE_AUTOLOGOUT	(30 * 60)

struct serve_user {
	char *name;
	unsigned char salt[SERVE_SALT], hash[SERVE_HASH];
	char **sources;			/* sorted, unique */
	int nsources;
	char *sources_json;		/* ["home","work"], for json_each() */
};

struct fail_entry {
	char addr[64];
	int count;
	int64_t first;			/* monotonic seconds */
};

struct session;
struct store_reader;

struct server {
	struct event_base *base;
	sqlite3 *db;			/* the engine's archive.db connection */
	struct store_reader *reader;
	SSL_CTX *tls;			/* NULL without a certificate */
	int implicit_tls;		/* tls = true: TLS from the first byte */
	int plaintext_ok;		/* LOGIN without TLS (loopback or allow_plaintext) */
	struct evconnlistener *listener;
	char listen[160];
	struct serve_user *users;
	int nusers;
	struct session *sessions;
	int nsessions;
	struct fail_entry fails[SERVE_FAIL_TABLE];
	long long logins, failures, connections;
};

/* listener.c */
struct serve_opts {
	const char *listen;		/* host:port */
	int tls;			/* 1 implicit TLS; 0 plain (STARTTLS with a cert) */
	const char *cert_file, *key_file;
	int allow_plaintext;		/* plain IMAP beyond loopback */
};
struct server *server_start(struct event_base *base, sqlite3 *db, const char *data_dir,
    const struct serve_opts *o, char *err, size_t errlen);
void server_stop(struct server *srv);
/* Replaces the users (the old array is freed); sessions of a user who is
 * gone or whose sources changed are closed. */
void server_set_users(struct server *srv, struct serve_user *users, int n);
void serve_user_free(struct serve_user *u);
/* The user WAS is now (same name and sources), or NULL. */
const struct serve_user *server_user_after_change(const struct server *srv,
    const struct serve_user *was);
int serve_hash_password(const char *password, size_t len, const unsigned char *salt,
    unsigned char *out);
const struct serve_user *server_find_user(const struct server *srv, const char *name);
/* Per-address failures: 1 if ADDR may try now. */
int server_login_allowed(struct server *srv, const char *addr);
void server_login_failed(struct server *srv, const char *addr);

/* session.c */
void session_new(struct server *srv, int fd, const char *addr);
void session_close(struct session *s, const char *bye);
/* Output. */
void sess_printf(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sess_write(struct session *s, const void *data, size_t len);
void sess_astring(struct session *s, const char *str, size_t len);
void sess_nstring(struct session *s, const char *str);
size_t sess_pending(struct session *s);
/* The command in progress finished (a FETCH that waited). */
void sess_resume(struct session *s);

/* mailbox.c: a mailbox of the user's view. */
struct mailbox {
	int64_t id;
	char *name;			/* UTF-8: "work/INBOX", "All" */
	char *source, *folder;		/* NULL for All */
	uint32_t uidvalidity, uidnext;
	uint32_t *uids;			/* by sequence number - 1 */
	uint32_t count, cap;
	int64_t synced_changes;		/* sqlite3_total_changes at the last sync */
};

struct mailbox_entry {
	char *name;			/* UTF-8 */
	int noselect;			/* a parent that is no folder of its own */
	int children;
	int all;			/* the virtual All */
};

int mailbox_list(struct server *srv, const struct serve_user *u, struct mailbox_entry **out,
    int *n);
void mailbox_list_free(struct mailbox_entry *e, int n);
/* Opens NAME (UTF-8) for U: 0, -1 (no such mailbox), -2 (database). */
int mailbox_open(struct server *srv, const struct serve_user *u, const char *name,
    struct mailbox **out);
void mailbox_free(struct mailbox *m);
/* Gives UIDs to what was archived since; *ADDED new messages. 0 or -1. */
int mailbox_sync(struct server *srv, const struct serve_user *u, struct mailbox *m,
    uint32_t *added);
uint32_t mailbox_seq_of(const struct mailbox *m, uint32_t uid);	/* 0: none */
uint32_t mailbox_unseen(struct server *srv, struct mailbox *m);
/* The mailbox name a client sent (modified UTF-7) as UTF-8, or NULL. */
char *mailbox_decode_name(const char *s, size_t len);
char *mailbox_encode_name(const char *utf8);

/* fetch.c */
struct fetch_job;
/* Runs FETCH (UID if BY_UID) of SET with ITEMS in the selected mailbox;
 * may finish later (sess_resume). */
void fetch_start(struct session *s, struct mailbox *m, const struct imapd_seqset *set, int by_uid,
    struct imapd_fetch *items, const char *tag, const char *cmdname);
/* Goes on after the output drained; 1 when done. */
int fetch_continue(struct fetch_job *j);
void fetch_free(struct fetch_job *j);

/* structure.c: a message's MIME tree over its bytes in memory. */
struct mime_part;
struct mime_part *structure_parse(const char *data, size_t len);
void structure_free(struct mime_part *p);
/* BODYSTRUCTURE (EXT) or BODY into OUT (an evbuffer). */
struct evbuffer;
void structure_write(struct evbuffer *out, const struct mime_part *p, const char *data, int ext);
/* ENVELOPE of the header block HDR. */
void envelope_write(struct evbuffer *out, const char *hdr, size_t len);
/* The bytes of section PART (PATH of N numbers) and TEXT kind: *OFF, *LEN
 * into DATA; 0, or -1 when the message has no such part. */
int structure_section(const struct mime_part *p, const uint32_t *path, int n, int text,
    size_t *off, size_t *len);
/* Where the header block of a message ends (after its empty line). */
size_t header_end(const char *data, size_t len);
/* The header lines of HDR named (or, with NOT, not named) by FIELDS. */
void header_fields(struct evbuffer *out, const char *hdr, size_t len, const char *const *fields,
    int n, int not);
/* A string as IMAP wants it: quoted when it can be, else a literal. */
void put_string(struct evbuffer *out, const char *s, size_t len);
void put_nstring(struct evbuffer *out, const char *s);

/* search.c: the UIDs of M that KEYS select, ascending, in *OUT (malloc'd). */
int search_run_keys(struct server *srv, const struct serve_user *u, struct mailbox *m,
    const struct imapd_search *keys, uint32_t **out, uint32_t *n, char *err, size_t errlen);

#endif
