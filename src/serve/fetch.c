/*
 * FETCH in the IMAP view. A job goes through its messages and items in
 * order and stops whenever the connection holds SERVE_OUT_HIGH bytes not
 * yet sent; the write callback (fired below half of that) calls it again.
 * BODY[], BODY[TEXT] and their partial ranges are streamed from the store
 * in SERVE_CHUNK pieces, so a client reading slowly holds one chunk of a
 * message, never the whole of it. Only BODYSTRUCTURE and numbered parts
 * read a message whole (up to STRUCT_MAX), to walk its MIME tree.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "log.h"
#include "serve/session.h"
#include "store/reader.h"

#define HEAD_MAX	(256 * 1024)		/* header bytes read for ENVELOPE, HEADER... */
#define STRUCT_MAX	((size_t)64 << 20)	/* a message read whole for its structure */

struct fetch_job {
	struct session *s;
	struct mailbox *m;
	struct imapd_fetch *items;
	char tag[IMAPD_TAG_MAX + 1];
	char name[16];
	int by_uid;
	uint32_t *seqs, nseqs, next;	/* what to send, and the next */
	sqlite3_stmt *row;
	/* the message being sent */
	int open;
	int item;
	char hash[65];
	char *flags;
	int64_t internaldate;
	uint64_t size;
	char *head;			/* its first bytes (HEAD_MAX at most) */
	size_t head_len, hdr_end;
	char *whole;			/* all of it, for structure */
	size_t whole_len;
	struct mime_part *tree;
	/* a stream in progress */
	struct store_stream *stream;
	uint64_t skip, left;
	int to_end;			/* the stream ends with the message: hash checked */
	int failed;
};

void
fetch_free(struct fetch_job *j)
{
	if (j == NULL)
		return;
	store_stream_close(j->stream);
	free(j->flags);
	if (j->head != j->whole)
		free(j->head);
	free(j->whole);
	structure_free(j->tree);
	sqlite3_finalize(j->row);
	free(j->seqs);
	free(j->items);
	free(j);
}

static void
message_done(struct fetch_job *j)
{
	store_stream_close(j->stream);
	j->stream = NULL;
	free(j->flags);
	j->flags = NULL;
	if (j->head != j->whole)
		free(j->head);
	j->head = NULL;
	free(j->whole);
	j->whole = NULL;
	structure_free(j->tree);
	j->tree = NULL;
	j->open = 0;
}

/* The sequence numbers SET names, ascending and once each. -1: a number
 * past the mailbox (BAD). */
static int
collect(struct fetch_job *j, const struct imapd_seqset *set)
{
	struct mailbox *m = j->m;
	unsigned char *bits;

	if (m->count == 0)
		return 0;
	if ((bits = calloc((m->count + 7) / 8, 1)) == NULL || (j->seqs = malloc(m->count *
	    sizeof(*j->seqs))) == NULL) {
		free(bits);
		return -2;
	}
	uint32_t maxuid = m->uids[m->count - 1];
	for (int i = 0; i < set->n; i++) {
		uint32_t lo = set->r[i].lo, hi = set->r[i].hi, a, b;
		if (j->by_uid) {
			lo = lo ? lo : maxuid;
			hi = hi ? hi : maxuid;
		} else {
			lo = lo ? lo : m->count;
			hi = hi ? hi : m->count;
		}
		if (lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (j->by_uid) {
			/* First index with uid >= lo; last with uid <= hi. */
			uint32_t l = 0, h = m->count;
			while (l < h) {
				uint32_t mid = l + (h - l) / 2;
				if (m->uids[mid] < lo)
					l = mid + 1;
				else
					h = mid;
			}
			a = l;
			for (b = a; b < m->count && m->uids[b] <= hi; b++)
				bits[b / 8] |= (unsigned char)(1 << (b % 8));
			continue;
		}
		if (hi > m->count) {
			free(bits);
			return -1;
		}
		for (a = lo - 1; a < hi; a++)
			bits[a / 8] |= (unsigned char)(1 << (a % 8));
	}
	for (uint32_t i = 0; i < m->count; i++)
		if (bits[i / 8] & (1 << (i % 8)))
			j->seqs[j->nseqs++] = i + 1;
	free(bits);
	return 0;
}

void
fetch_start(struct session *s, struct mailbox *m, const struct imapd_seqset *set, int by_uid,
    struct imapd_fetch *items, const char *tag, const char *cmdname)
{
	struct fetch_job *j = calloc(1, sizeof(*j));
	int rc;

	if (j == NULL) {
		free(items);
		sess_printf(s, "%s NO [SERVERBUG] out of memory\r\n", tag);
		return;
	}
	j->s = s;
	j->m = m;
	j->items = items;
	j->by_uid = by_uid;
	snprintf(j->tag, sizeof(j->tag), "%s", tag);
	snprintf(j->name, sizeof(j->name), "%s", cmdname);
	if (by_uid) {
		int has = 0;
		for (int i = 0; i < items->n; i++)
			has |= items->items[i].kind == FETCH_UID;
		if (!has && items->n < IMAPD_FETCH_MAX) {
			/* UID FETCH always answers with the UID (at the end:
			 * an item's field names point into the item itself). */
			memset(&items->items[items->n], 0, sizeof(items->items[0]));
			items->items[items->n].kind = FETCH_UID;
			strcpy(items->items[items->n].name, "UID");
			items->n++;
		}
	}
	if ((rc = collect(j, set)) < 0) {
		sess_printf(s, rc == -1 ? "%s BAD no such message (the mailbox has fewer)\r\n" :
		    "%s NO [SERVERBUG] out of memory\r\n", tag);
		fetch_free(j);
		return;
	}
	if (sqlite3_prepare_v2(s->srv->db, "SELECT u.hash, u.flags, u.internaldate, m.size FROM "
	    "imap_uids u JOIN messages m ON m.hash = u.hash WHERE u.mailbox = ?1 AND u.uid = ?2", -1,
	    &j->row, NULL) != SQLITE_OK) {
		sess_printf(s, "%s NO [UNAVAILABLE] cannot read the archive now\r\n", tag);
		fetch_free(j);
		return;
	}
	if (fetch_continue(j)) {
		fetch_free(j);
		return;
	}
	s->job = j;
	s->wait = WAIT_FETCH;
}

/* ---- one message's data ---------------------------------------------------------- */

static int
load_row(struct fetch_job *j, uint32_t uid)
{
	int ok = 0;

	sqlite3_bind_int64(j->row, 1, j->m->id);
	sqlite3_bind_int64(j->row, 2, uid);
	if (sqlite3_step(j->row) == SQLITE_ROW) {
		const char *h = (const char *)sqlite3_column_text(j->row, 0);
		const char *f = (const char *)sqlite3_column_text(j->row, 1);
		snprintf(j->hash, sizeof(j->hash), "%s", h ? h : "");
		j->flags = strdup(f ? f : "");
		j->internaldate = sqlite3_column_int64(j->row, 2);
		j->size = (uint64_t)sqlite3_column_int64(j->row, 3);
		ok = j->flags != NULL;
	}
	sqlite3_reset(j->row);
	return ok ? 0 : -1;
}

static int
load_head(struct fetch_job *j)
{
	struct store_stream *st;
	uint64_t size;
	size_t want;

	if (j->head || j->whole)
		return 0;
	want = j->size < HEAD_MAX ? (size_t)j->size : HEAD_MAX;
	if ((j->head = malloc(want + 1)) == NULL)
		return -1;
	if ((st = store_reader_stream(j->s->srv->reader, j->hash, &size)) == NULL)
		return -1;
	j->head_len = 0;
	while (j->head_len < want) {
		ssize_t n = store_stream_read(st, j->head + j->head_len, want - j->head_len);
		if (n <= 0) {
			store_stream_close(st);
			return -1;
		}
		j->head_len += (size_t)n;
	}
	store_stream_close(st);
	j->head[j->head_len] = '\0';
	j->hdr_end = header_end(j->head, j->head_len);
	return 0;
}

static int
load_whole(struct fetch_job *j)
{
	if (j->whole)
		return 0;
	if (store_reader_get(j->s->srv->reader, j->hash, STRUCT_MAX, &j->whole, &j->whole_len) < 0)
		return -1;
	free(j->head);
	j->head = j->whole;	/* shared: freed as whole */
	j->head_len = j->whole_len;
	j->hdr_end = header_end(j->whole, j->whole_len);
	if ((j->tree = structure_parse(j->whole, j->whole_len)) == NULL)
		return -1;
	return 0;
}

static void
put_flags(struct evbuffer *out, const char *flags)
{
	const char *p = flags;
	int first = 1;

	evbuffer_add_printf(out, "FLAGS (");
	while (*p) {
		while (*p == ' ')
			p++;
		const char *q = p;
		int ok = 1;
		while (*q && *q != ' ') {
			unsigned char c = (unsigned char)*q;
			if (c <= 0x20 || c >= 0x7f || strchr("(){\"%*]", c) || (c == '\\' && q != p))
				ok = 0;
			q++;
		}
		if (q > p && ok && !(q - p == 7 && strncmp(p, "\\Recent", 7) == 0)) {
			evbuffer_add_printf(out, "%s%.*s", first ? "" : " ", (int)(q - p), p);
			first = 0;
		}
		p = q;
	}
	evbuffer_add_printf(out, ")");
}

static void
put_date(struct evbuffer *out, int64_t t)
{
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
		"Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	time_t tt = (time_t)t;

	if (t <= 0 || gmtime_r(&tt, &tm) == NULL) {
		tt = 0;
		gmtime_r(&tt, &tm);
	}
	evbuffer_add_printf(out, "INTERNALDATE \"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday,
	    mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* A literal of LEN bytes of BUF, cut to the item's partial range. */
static void
put_range(struct evbuffer *out, const struct imapd_fetch_item *it, const char *buf, size_t len)
{
	size_t start = 0, n = len;

	if (it->partial) {
		start = it->start < len ? it->start : len;
		n = len - start < it->count ? len - start : it->count;
	}
	evbuffer_add_printf(out, "%s {%zu}\r\n", it->name, n);
	evbuffer_add(out, buf + start, n);
}

/* Starts streaming LEN bytes of the message from OFF, cut to the range. */
static int
start_stream(struct fetch_job *j, struct evbuffer *out, const struct imapd_fetch_item *it,
    uint64_t off, uint64_t len)
{
	uint64_t start = 0, n = len, size;

	if (it->partial) {
		start = it->start < len ? it->start : len;
		n = len - start < it->count ? len - start : it->count;
	}
	evbuffer_add_printf(out, "%s {%llu}\r\n", it->name, (unsigned long long)n);
	if (n == 0)
		return 0;
	if ((j->stream = store_reader_stream(j->s->srv->reader, j->hash, &size)) == NULL)
		return -1;
	j->skip = off + start;
	j->left = n;
	j->to_end = off + start + n == size;
	return 0;
}

/* Sends the next chunk: 1 when the stream is done, 0 to go on, -1 failed. */
static int
pump(struct fetch_job *j)
{
	char buf[SERVE_CHUNK];
	ssize_t n;

	while (j->skip) {
		n = store_stream_read(j->stream, buf, j->skip < sizeof(buf) ? (size_t)j->skip : sizeof(buf));
		if (n <= 0)
			return -1;
		j->skip -= (uint64_t)n;
	}
	n = store_stream_read(j->stream, buf, j->left < sizeof(buf) ? (size_t)j->left : sizeof(buf));
	if (n <= 0)
		return -1;
	sess_write(j->s, buf, (size_t)n);
	j->left -= (uint64_t)n;
	if (j->left)
		return 0;
	/* A whole message read to its end is checked against its hash. */
	if (j->to_end && store_stream_read(j->stream, buf, 1) < 0)
		return -1;
	store_stream_close(j->stream);
	j->stream = NULL;
	return 1;
}

/* One item into OUT (or a stream started). -1 when the message cannot be read. */
static int
item(struct fetch_job *j, struct evbuffer *out, const struct imapd_fetch_item *it, uint32_t uid)
{
	switch (it->kind) {
	case FETCH_UID:
		evbuffer_add_printf(out, "UID %u", uid);
		return 0;
	case FETCH_FLAGS:
		put_flags(out, j->flags);
		return 0;
	case FETCH_INTERNALDATE:
		put_date(out, j->internaldate);
		return 0;
	case FETCH_SIZE:
		evbuffer_add_printf(out, "RFC822.SIZE %llu", (unsigned long long)j->size);
		return 0;
	case FETCH_ENVELOPE:
		if (load_head(j) < 0)
			return -1;
		evbuffer_add_printf(out, "ENVELOPE ");
		envelope_write(out, j->head, j->hdr_end);
		return 0;
	case FETCH_BODY:
	case FETCH_BODYSTRUCTURE:
		if (load_whole(j) < 0)
			return -1;
		evbuffer_add_printf(out, "%s ", it->kind == FETCH_BODY ? "BODY" : "BODYSTRUCTURE");
		structure_write(out, j->tree, j->whole, it->kind == FETCH_BODYSTRUCTURE);
		return 0;
	case FETCH_RFC822:
		return start_stream(j, out, it, 0, j->size);
	case FETCH_RFC822_HEADER:
	case FETCH_RFC822_TEXT:
		if (load_head(j) < 0)
			return -1;
		if (it->kind == FETCH_RFC822_HEADER) {
			put_range(out, it, j->head, j->hdr_end);
			return 0;
		}
		return start_stream(j, out, it, j->hdr_end, j->size - j->hdr_end);
	case FETCH_SECTION:
		break;
	}
	if (it->nparts == 0) {
		/* Sections of the message itself. */
		if (it->text == SECTION_ALL)
			return start_stream(j, out, it, 0, j->size);
		if (load_head(j) < 0)
			return -1;
		if (it->text == SECTION_TEXT)
			return start_stream(j, out, it, j->hdr_end, j->size - j->hdr_end);
		if (it->text == SECTION_HEADER) {
			put_range(out, it, j->head, j->hdr_end);
			return 0;
		}
		struct evbuffer *tmp = evbuffer_new();
		header_fields(tmp, j->head, j->hdr_end, it->fields, it->nfields,
		    it->text == SECTION_HEADER_FIELDS_NOT);
		size_t l = evbuffer_get_length(tmp);
		put_range(out, it, (const char *)evbuffer_pullup(tmp, -1), l);
		evbuffer_free(tmp);
		return 0;
	}
	/* A numbered part: from the message in memory. */
	size_t off, len;
	if (load_whole(j) < 0)
		return -1;
	int text = it->text;
	if (structure_section(j->tree, it->part, it->nparts, text, &off, &len) < 0) {
		evbuffer_add_printf(out, "%s NIL", it->name);
		return 0;
	}
	if (text == SECTION_HEADER_FIELDS || text == SECTION_HEADER_FIELDS_NOT) {
		struct evbuffer *tmp = evbuffer_new();
		header_fields(tmp, j->whole + off, len, it->fields, it->nfields,
		    text == SECTION_HEADER_FIELDS_NOT);
		size_t l = evbuffer_get_length(tmp);
		put_range(out, it, (const char *)evbuffer_pullup(tmp, -1), l);
		evbuffer_free(tmp);
		return 0;
	}
	put_range(out, it, j->whole + off, len);
	return 0;
}

int
fetch_continue(struct fetch_job *j)
{
	struct session *s = j->s;
	struct evbuffer *out = bufferevent_get_output(s->bev);

	while (j->next < j->nseqs && !j->failed) {
		if (sess_pending(s) > SERVE_OUT_HIGH)
			return 0;	/* write_cb calls again */
		uint32_t seq = j->seqs[j->next], uid = j->m->uids[seq - 1];
		if (!j->open) {
			if (load_row(j, uid) < 0) {
				/* Not in the view's map any more: skipped. */
				j->next++;
				continue;
			}
			j->open = 1;
			j->item = 0;
			evbuffer_add_printf(out, "* %u FETCH (", seq);
		}
		if (j->stream) {
			int rc = pump(j);
			if (rc < 0)
				goto unreadable;
			if (rc == 0)
				continue;
			j->item++;
			continue;
		}
		if (j->item < j->items->n) {
			if (j->item > 0)
				evbuffer_add(out, " ", 1);
			if (item(j, out, &j->items->items[j->item], uid) < 0)
				goto unreadable;
			if (!j->stream)
				j->item++;
			continue;
		}
		evbuffer_add_printf(out, ")\r\n");
		message_done(j);
		j->next++;
	}
	evbuffer_add_printf(out, "%s OK %s done\r\n", j->tag, j->name);
	return 1;
unreadable:
	/* Bytes may have been sent already: the response cannot be mended,
	 * the connection ends (the client will ask again). */
	log_error(NULL, "imap view: cannot read message id=%s error=\"%s\"", j->hash,
	    strerror(errno ? errno : EIO));
	j->failed = 1;
	message_done(j);
	sess_printf(s, "\r\n* BYE cannot read a message of the archive (see the engine log)\r\n");
	sess_close_when_written(s);
	return 0;
}
