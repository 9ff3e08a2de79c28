#ifndef EMAILVAULT_SERVE_SESSION_H
#define EMAILVAULT_SERVE_SESSION_H
/*
 * One client connection of the IMAP view: shared by session.c (I/O and
 * the not-authenticated state), commands.c and fetch.c.
 */
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "serve/serve.h"

enum sess_state { ST_NOAUTH, ST_AUTH, ST_SELECTED, ST_LOGOUT };

enum sess_wait {
	WAIT_NONE,
	WAIT_FETCH,		/* a FETCH waits for the output to drain */
	WAIT_LOGIN,		/* a failed login's answer is held back */
	WAIT_SASL,		/* AUTHENTICATE PLAIN waits for the client's response */
	WAIT_IDLE		/* in IDLE, until DONE */
};

struct session {
	struct server *srv;
	struct session *next, *prev;
	struct bufferevent *bev;
	char addr[64];
	enum sess_state state;
	enum sess_wait wait;
	int tls;			/* the connection is encrypted */
	int closing;			/* BYE sent: close once written */
	struct imapd_framer *framer;
	const struct serve_user *user;
	struct mailbox *mbox;
	int readonly;			/* always: EXAMINE and SELECT alike */
	struct fetch_job *job;
	struct event *timer;		/* login delay, IDLE poll */
	char tag[IMAPD_TAG_MAX + 1];	/* of the command that waits */
	char login_reply[160];		/* what the held-back login says */
	int starttls_pending;
};

void sess_close_when_written(struct session *s);

/* commands.c: a command of the authenticated or selected state; 1 when it
 * was one. */
int commands_dispatch(struct session *s, struct imapd_cmd *cmd);
void commands_idle_poll(struct session *s);
void session_unselect(struct session *s);
void session_users_changed(struct server *srv);

#endif
