/*
 * The commands of the authenticated and selected states. The view is
 * read-only: every command that would change something is answered NO
 * with what to do instead, never BAD (clients retry or hide a BAD).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "log.h"
#include "serve/session.h"

static const char *const refused[][2] = {
	{ "APPEND", "the archive is read-only: messages come in from the sources" },
	{ "CREATE", "the archive is read-only: its folders are those of the sources" },
	{ "DELETE", "the archive is read-only: nothing is ever deleted from it" },
	{ "RENAME", "the archive is read-only: its folders are those of the sources" },
	{ "SUBSCRIBE", "the archive is read-only: every folder is listed anyway" },
	{ "UNSUBSCRIBE", "the archive is read-only: every folder is listed anyway" },
	{ "STORE", "the archive is read-only: flags are as archived" },
	{ "UID STORE", "the archive is read-only: flags are as archived" },
	{ "COPY", "the archive is read-only: to restore a message, copy it to a mailbox of another account" },
	{ "UID COPY", "the archive is read-only: to restore a message, copy it to a mailbox of another account" },
	{ "MOVE", "the archive is read-only: copy the message instead" },
	{ "UID MOVE", "the archive is read-only: copy the message instead" },
	{ "EXPUNGE", "the archive is read-only: nothing is ever expunged" },
	{ "UID EXPUNGE", "the archive is read-only: nothing is ever expunged" },
	{ "SETACL", "the archive is read-only" },
	{ "DELETEACL", "the archive is read-only" },
	{ "SETQUOTA", "the archive is read-only" },
	{ "SETMETADATA", "the archive is read-only" },
};

static int
refuse_write(struct session *s, const struct imapd_cmd *cmd)
{
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (strcmp(cmd->name, refused[i][0]) == 0) {
			sess_printf(s, "%s NO [CANNOT] %s\r\n", cmd->tag, refused[i][1]);
			return 1;
		}
	return 0;
}

/* The UTF-8 name of mailbox argument N, or NULL after answering BAD. */
static char *
mailbox_arg(struct session *s, const struct imapd_cmd *cmd, const struct imapd_node *n)
{
	char *name;

	if (!imapd_is_astring(n) || strlen(n->s) != n->len) {
		sess_printf(s, "%s BAD expected a mailbox name\r\n", cmd->tag);
		return NULL;
	}
	if ((name = mailbox_decode_name(n->s, n->len)) == NULL)
		sess_printf(s, "%s BAD malformed mailbox name (modified UTF-7)\r\n", cmd->tag);
	return name;
}

static void
put_mailbox_name(struct session *s, const char *utf8)
{
	char *enc = mailbox_encode_name(utf8);

	sess_astring(s, enc ? enc : utf8, strlen(enc ? enc : utf8));
	free(enc);
}

/* ---- LIST ------------------------------------------------------------------------ */

/* Whether NAME matches PAT: '*' anything, '%' anything but '/'. */
static int
wild(const char *pat, const char *name)
{
	for (; *pat; pat++, name++) {
		if (*pat == '*' || *pat == '%') {
			for (const char *p = name;; p++) {
				if (wild(pat + 1, p))
					return 1;
				if (*p == '\0' || (*pat == '%' && *p == '/'))
					return 0;
			}
		}
		if (*name != *pat)
			return 0;
	}
	return *name == '\0';
}

static void
list(struct session *s, const struct imapd_cmd *cmd, int lsub)
{
	const struct imapd_node *ref = imapd_arg(cmd, 0), *pat = imapd_arg(cmd, 1);
	char *r, *p, *full;
	struct mailbox_entry *e;
	int n;
	const char *what = lsub ? "LSUB" : "LIST";

	if (imapd_nargs(cmd) != 2 || ref->type == IMAPD_LIST || pat->type == IMAPD_LIST) {
		sess_printf(s, "%s BAD %s needs a reference and a pattern\r\n", cmd->tag, what);
		return;
	}
	if ((r = mailbox_arg(s, cmd, ref)) == NULL)
		return;
	if ((p = mailbox_arg(s, cmd, pat)) == NULL) {
		free(r);
		return;
	}
	if (*p == '\0') {
		/* The hierarchy separator and the root. */
		sess_printf(s, "* %s (\\Noselect) \"/\" \"\"\r\n%s OK %s done\r\n", what, cmd->tag, what);
		free(r);
		free(p);
		return;
	}
	size_t rl = strlen(r), pl = strlen(p);
	if ((full = malloc(rl + pl + 2)) == NULL) {
		sess_printf(s, "%s NO [SERVERBUG] out of memory\r\n", cmd->tag);
		free(r);
		free(p);
		return;
	}
	snprintf(full, rl + pl + 2, "%s%s%s", r, rl && r[rl - 1] != '/' && *p != '/' ? "/" : "", p);
	if (mailbox_list(s->srv, s->user, &e, &n) < 0) {
		sess_printf(s, "%s NO [SERVERBUG] cannot read the archive\r\n", cmd->tag);
	} else {
		for (int i = 0; i < n; i++) {
			if (!wild(full, e[i].name))
				continue;
			sess_printf(s, "* %s (%s%s%s) \"/\" ", what, e[i].noselect ? "\\Noselect " : "",
			    e[i].children ? "\\HasChildren" : "\\HasNoChildren", e[i].all ? " \\All" : "");
			put_mailbox_name(s, e[i].name);
			sess_printf(s, "\r\n");
		}
		mailbox_list_free(e, n);
		sess_printf(s, "%s OK %s done\r\n", cmd->tag, what);
	}
	free(full);
	free(r);
	free(p);
}

/* ---- SELECT, STATUS ---------------------------------------------------------------- */

static int
open_box(struct session *s, const struct imapd_cmd *cmd, const char *name, struct mailbox **m)
{
	int rc = mailbox_open(s->srv, s->user, name, m);
	uint32_t added;

	if (rc == 0 && mailbox_sync(s->srv, s->user, *m, &added) < 0) {
		mailbox_free(*m);
		*m = NULL;
		rc = -2;
	}
	if (rc == -1)
		sess_printf(s, "%s NO [NONEXISTENT] no such mailbox (LIST shows what you may see)\r\n",
		    cmd->tag);
	else if (rc < 0)
		sess_printf(s, "%s NO [UNAVAILABLE] cannot read the archive now, try again\r\n", cmd->tag);
	return rc;
}

void
session_unselect(struct session *s)
{
	mailbox_free(s->mbox);
	s->mbox = NULL;
	if (s->state == ST_SELECTED)
		s->state = ST_AUTH;
}

static void
select_box(struct session *s, const struct imapd_cmd *cmd)
{
	struct mailbox *m;
	char *name;

	if (imapd_nargs(cmd) < 1) {
		sess_printf(s, "%s BAD %s needs a mailbox\r\n", cmd->tag, cmd->name);
		return;
	}
	/* A failed SELECT leaves no mailbox selected (RFC 3501 6.3.1). */
	session_unselect(s);
	if ((name = mailbox_arg(s, cmd, imapd_arg(cmd, 0))) == NULL)
		return;
	if (open_box(s, cmd, name, &m) == 0) {
		s->mbox = m;
		s->state = ST_SELECTED;
		sess_printf(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
		    "* OK [PERMANENTFLAGS ()] read-only archive\r\n"
		    "* %u EXISTS\r\n* 0 RECENT\r\n"
		    "* OK [UIDVALIDITY %u] UIDs valid\r\n* OK [UIDNEXT %u] predicted next UID\r\n",
		    m->count, m->uidvalidity, m->uidnext);
		if (m->count) {
			uint32_t unseen = 0;
			/* The first unseen message's sequence number. */
			sqlite3_stmt *st;
			if (sqlite3_prepare_v2(s->srv->db, "SELECT min(uid) FROM imap_uids WHERE mailbox = ?1 "
			    "AND (flags IS NULL OR instr(flags, '\\Seen') = 0)", -1, &st, NULL) == SQLITE_OK) {
				sqlite3_bind_int64(st, 1, m->id);
				if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
					unseen = mailbox_seq_of(m, (uint32_t)sqlite3_column_int64(st, 0));
				sqlite3_finalize(st);
			}
			if (unseen)
				sess_printf(s, "* OK [UNSEEN %u] first unseen\r\n", unseen);
		}
		sess_printf(s, "%s OK [READ-ONLY] %s done, the archive is read-only\r\n", cmd->tag,
		    cmd->name);
	}
	free(name);
}

static void
status(struct session *s, const struct imapd_cmd *cmd)
{
	const struct imapd_node *items = imapd_arg(cmd, 1);
	struct mailbox *m;
	char *name;

	if (imapd_nargs(cmd) != 2 || items->type != IMAPD_LIST) {
		sess_printf(s, "%s BAD STATUS needs a mailbox and a list of items\r\n", cmd->tag);
		return;
	}
	for (const struct imapd_node *i = imapd_child(cmd, items); i; i = imapd_next(cmd, i))
		if (!imapd_atom_is(i, "MESSAGES") && !imapd_atom_is(i, "RECENT") &&
		    !imapd_atom_is(i, "UIDNEXT") && !imapd_atom_is(i, "UIDVALIDITY") &&
		    !imapd_atom_is(i, "UNSEEN")) {
			sess_printf(s, "%s BAD unknown STATUS item %.40s\r\n", cmd->tag, i->s ? i->s : "(");
			return;
		}
	if ((name = mailbox_arg(s, cmd, imapd_arg(cmd, 0))) == NULL)
		return;
	if (open_box(s, cmd, name, &m) == 0) {
		sess_printf(s, "* STATUS ");
		put_mailbox_name(s, name);
		sess_printf(s, " (");
		int first = 1;
		for (const struct imapd_node *i = imapd_child(cmd, items); i; i = imapd_next(cmd, i)) {
			uint32_t v = 0;
			if (imapd_atom_is(i, "MESSAGES"))
				v = m->count;
			else if (imapd_atom_is(i, "UIDNEXT"))
				v = m->uidnext;
			else if (imapd_atom_is(i, "UIDVALIDITY"))
				v = m->uidvalidity;
			else if (imapd_atom_is(i, "UNSEEN"))
				v = mailbox_unseen(s->srv, m);
			sess_printf(s, "%s%s %u", first ? "" : " ", i->s, v);
			first = 0;
		}
		sess_printf(s, ")\r\n%s OK STATUS done\r\n", cmd->tag);
		mailbox_free(m);
	}
	free(name);
}

/* ---- the selected state ---------------------------------------------------------- */

/* New mail since the last look: "* N EXISTS". */
static void
announce(struct session *s)
{
	uint32_t added;

	if (s->mbox && mailbox_sync(s->srv, s->user, s->mbox, &added) == 0 && added)
		sess_printf(s, "* %u EXISTS\r\n", s->mbox->count);
}

static void
idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	commands_idle_poll(s);
}

void
commands_idle_poll(struct session *s)
{
	if (s->wait != WAIT_IDLE)
		return;
	announce(s);
	struct timeval tv = { SERVE_IDLE_POLL_MS / 1000, (SERVE_IDLE_POLL_MS % 1000) * 1000 };
	evtimer_add(s->timer, &tv);
}

static void
idle(struct session *s, const struct imapd_cmd *cmd)
{
	snprintf(s->tag, sizeof(s->tag), "%s", cmd->tag);
	s->wait = WAIT_IDLE;
	if (s->timer)
		event_free(s->timer);
	s->timer = evtimer_new(s->srv->base, idle_cb, s);
	sess_printf(s, "+ idling\r\n");
	commands_idle_poll(s);
}

static void
fetch(struct session *s, const struct imapd_cmd *cmd, int by_uid)
{
	const struct imapd_node *set = imapd_arg(cmd, 0), *items = imapd_arg(cmd, 1);
	struct imapd_seqset *ss = malloc(sizeof(*ss));
	struct imapd_fetch *f = malloc(sizeof(*f));
	char err[128];

	if (ss == NULL || f == NULL) {
		sess_printf(s, "%s NO [SERVERBUG] out of memory\r\n", cmd->tag);
	} else if (imapd_nargs(cmd) < 2 || set->type != IMAPD_ATOM ||
	    imapd_seqset_parse(set->s, set->len, ss) < 0) {
		sess_printf(s, "%s BAD %s needs a sequence set and items\r\n", cmd->tag, cmd->name);
	} else if (imapd_nargs(cmd) > 2) {
		sess_printf(s, "%s BAD FETCH modifiers are not supported\r\n", cmd->tag);
	} else if (imapd_fetch_parse(cmd, items, f, err, sizeof(err)) < 0) {
		sess_printf(s, "%s BAD %s\r\n", cmd->tag, err);
	} else {
		fetch_start(s, s->mbox, ss, by_uid, f, cmd->tag, cmd->name);
		f = NULL;	/* the job's now */
	}
	free(ss);
	free(f);
}

static void
search(struct session *s, const struct imapd_cmd *cmd, int by_uid)
{
	struct imapd_search *q = malloc(sizeof(*q));
	uint32_t *uids = NULL, n = 0;
	char err[160];

	if (q == NULL) {
		sess_printf(s, "%s NO [SERVERBUG] out of memory\r\n", cmd->tag);
		return;
	}
	if (imapd_atom_is(imapd_arg(cmd, 0), "RETURN")) {
		sess_printf(s, "%s BAD SEARCH RETURN (ESEARCH) is not supported\r\n", cmd->tag);
	} else if (imapd_search_parse(cmd, 0, q, err, sizeof(err)) < 0) {
		sess_printf(s, "%s BAD %s\r\n", cmd->tag, err);
	} else if (q->charset && strcasecmp(q->charset, "UTF-8") != 0 &&
	    strcasecmp(q->charset, "US-ASCII") != 0) {
		sess_printf(s, "%s NO [BADCHARSET (UTF-8 US-ASCII)] search in UTF-8\r\n", cmd->tag);
	} else if (search_run_keys(s->srv, s->user, s->mbox, q, &uids, &n, err, sizeof(err)) < 0) {
		sess_printf(s, "%s NO %s\r\n", cmd->tag, err);
	} else {
		struct evbuffer *out = evbuffer_new();
		evbuffer_add_printf(out, "* SEARCH");
		for (uint32_t i = 0; i < n; i++) {
			uint32_t v = by_uid ? uids[i] : mailbox_seq_of(s->mbox, uids[i]);
			if (v)
				evbuffer_add_printf(out, " %u", v);
		}
		evbuffer_add_printf(out, "\r\n%s OK %s done\r\n", cmd->tag, cmd->name);
		bufferevent_write_buffer(s->bev, out);
		evbuffer_free(out);
	}
	free(uids);
	imapd_search_free(q);
	free(q);
}

int
commands_dispatch(struct session *s, struct imapd_cmd *cmd)
{
	const char *n = cmd->name, *tag = cmd->tag;

	if (refuse_write(s, cmd))
		return 1;
	if (strcmp(n, "NOOP") == 0 || strcmp(n, "CHECK") == 0) {
		announce(s);
		sess_printf(s, "%s OK %s done\r\n", tag, n);
	} else if (strcmp(n, "NAMESPACE") == 0) {
		sess_printf(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n%s OK NAMESPACE done\r\n", tag);
	} else if (strcmp(n, "LIST") == 0 || strcmp(n, "LSUB") == 0) {
		list(s, cmd, n[1] == 'S');
	} else if (strcmp(n, "SELECT") == 0 || strcmp(n, "EXAMINE") == 0) {
		select_box(s, cmd);
	} else if (strcmp(n, "STATUS") == 0) {
		status(s, cmd);
	} else if (strcmp(n, "ENABLE") == 0) {
		sess_printf(s, "* ENABLED\r\n%s OK nothing to enable\r\n", tag);
	} else if (strcmp(n, "LOGIN") == 0 || strcmp(n, "AUTHENTICATE") == 0) {
		sess_printf(s, "%s BAD already logged in\r\n", tag);
	} else if (strcmp(n, "STARTTLS") == 0) {
		sess_printf(s, "%s BAD STARTTLS only before logging in\r\n", tag);
	} else if (s->state != ST_SELECTED) {
		if (strcmp(n, "FETCH") && strcmp(n, "UID FETCH") && strcmp(n, "SEARCH") &&
		    strcmp(n, "UID SEARCH") && strcmp(n, "CLOSE") && strcmp(n, "UNSELECT") &&
		    strcmp(n, "IDLE"))
			return 0;
		sess_printf(s, "%s BAD select a mailbox first\r\n", tag);
	} else if (strcmp(n, "CLOSE") == 0 || strcmp(n, "UNSELECT") == 0) {
		session_unselect(s);
		sess_printf(s, "%s OK %s done\r\n", tag, n);
	} else if (strcmp(n, "FETCH") == 0 || strcmp(n, "UID FETCH") == 0) {
		fetch(s, cmd, n[0] == 'U');
	} else if (strcmp(n, "SEARCH") == 0 || strcmp(n, "UID SEARCH") == 0) {
		search(s, cmd, n[0] == 'U');
	} else if (strcmp(n, "IDLE") == 0) {
		idle(s, cmd);
	} else {
		return 0;
	}
	return 1;
}

void
session_users_changed(struct server *srv)
{
	struct session *s = srv->sessions, *next;

	for (; s; s = next) {
		next = s->next;
		if (s->user == NULL)
			continue;
		const struct serve_user *now = server_user_after_change(srv, s->user);
		if (now) {
			s->user = now;
		} else {
			char qu[160];
			log_info(NULL, "imap view: session closed, its user changed user=%s addr=%s",
			    log_quote(qu, sizeof(qu), s->user->name), s->addr);
			s->user = NULL;
			session_close(s, "your access changed: log in again");
		}
	}
}
