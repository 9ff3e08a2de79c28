/*
 * libFuzzer target for the IMAP response parser.
 *
 * The first 4 bytes choose small limits, the literal policy and how the
 * rest is cut into pieces. The rest is fed twice, in pieces and whole;
 * a hash of every event must come out the same (resumability), and the
 * callbacks check the parser's own promises (literal sizes, one error).
 * Then the parser is reset and fed again, which must repeat run two.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/parser.h"

struct st {
	uint64_t h;		/* FNV-1a of the events */
	int policy;		/* 0 inline, 1 stream, 2 by size, 3 no callbacks */
	uint64_t lit_left;	/* streamed bytes still due */
	int in_lit;
	int errors;
	int abort_at;		/* fail the n-th callback (0 = never) */
	int events;
};

/* Callbacks are counted in an order that does not depend on the cuts
 * (literal_data is not counted), so both runs abort at the same place. */
static int
abort_now(struct st *s)
{
	return ++s->events == s->abort_at;
}

static void
mix(struct st *s, const void *p, size_t n)
{
	const unsigned char *b = p;

	while (n--)
		s->h = (s->h ^ *b++) * 1099511628211ull;
}

static void
mixu(struct st *s, uint64_t v)
{
	mix(s, &v, sizeof v);
}

static void
walk(struct st *s, const struct imap_node *n, int depth)
{
	const struct imap_node *c;
	const char *b;
	size_t len, count = 0;
	uint32_t v32;
	uint64_t v64;

	if (depth > 100000)
		abort();
	mixu(s, (uint64_t)imap_node_type(n));
	mixu(s, imap_node_size(n));
	mixu(s, (uint64_t)imap_node_is_literal8(n));
	b = imap_node_bytes(n, &len);
	if (b) {
		mix(s, b, len);
		if (b[len] != '\0')
			abort();
	}
	if (imap_node_u32(n, &v32) == 0)
		mixu(s, v32);
	if (imap_node_u64(n, &v64) == 0)
		mixu(s, v64);
	mixu(s, (uint64_t)imap_node_atom_is(n, "uid"));
	for (c = imap_node_child(n); c; c = imap_node_next(c)) {
		walk(s, c, depth + 1);
		count++;
	}
	if (count != imap_node_count(n))
		abort();
}

static int
on_response(void *ud, const struct imap_response *r)
{
	struct st *s = ud;
	const struct imap_node *n;
	uint64_t v;

	if (s->in_lit)
		abort();	/* a response while a literal is open */
	mixu(s, (uint64_t)r->kind);
	mixu(s, (uint64_t)r->status);
	if (r->tag)
		mix(s, r->tag, strlen(r->tag) + 1);
	mixu(s, (uint64_t)r->code.id);
	if (r->code.name)
		mix(s, r->code.name, strlen(r->code.name) + 1);
	if (strlen(r->code.raw) != r->code.raw_len)
		abort();
	mix(s, r->code.raw, r->code.raw_len);
	if (r->code.args)
		walk(s, r->code.args, 0);
	if (imap_code_u64(&r->code, &v) == 0)
		mixu(s, v);
	mix(s, r->text, r->text_len);
	mixu(s, r->has_number ? r->number : 0xffffffffffull);
	if (r->keyword)
		mix(s, r->keyword, strlen(r->keyword) + 1);
	mixu(s, (uint64_t)r->kw);
	if (r->data) {
		walk(s, r->data, 0);
		if ((n = imap_fetch_item(r, "BODY[]")) != NULL)
			mixu(s, imap_node_size(n));
		if ((n = imap_node_after(imap_node_child(r->data), "UID")))
			mixu(s, (uint64_t)imap_node_type(n));
	}
	mixu(s, r->wire_bytes);
	if (abort_now(s))
		return -1;
	/* pause on some responses, decided by content so both runs agree */
	if (r->kind == IMAP_RESP_TAGGED && (s->h & 3) == 0)
		return IMAP_PAUSE;
	return 0;
}

static int
literal_begin(void *ud, const struct imap_literal_info *li)
{
	struct st *s = ud;
	int stream;

	if (s->in_lit || strlen(li->item) != li->item_len)
		abort();
	mixu(s, li->size);
	mix(s, li->item, li->item_len);
	mixu(s, li->depth);
	mixu(s, li->has_uid ? li->uid : 0xffffffffffull);
	mixu(s, li->has_number ? li->number : 0xffffffffffull);
	mix(s, li->keyword, strlen(li->keyword));
	if (abort_now(s))
		return -1;
	if (s->policy == 2)
		stream = (li->size & 1) != 0;
	else
		stream = s->policy == 1;
	if (stream) {
		s->in_lit = 1;
		s->lit_left = li->size;
		if (li->size == 0)
			s->in_lit = 2;	/* literal_end comes at once */
	}
	return stream ? IMAP_LIT_STREAM : IMAP_LIT_INLINE;
}

static int
literal_data(void *ud, const char *data, size_t len)
{
	struct st *s = ud;

	if (s->in_lit != 1 || len == 0 || len > s->lit_left)
		abort();
	s->lit_left -= len;
	mix(s, data, len);
	return 0;
}

static int
literal_end(void *ud)
{
	struct st *s = ud;

	if (!s->in_lit || s->lit_left != 0)
		abort();
	s->in_lit = 0;
	mixu(s, 0x11);
	return abort_now(s) ? -1 : 0;
}

static void
on_error(void *ud, int code, const char *msg)
{
	struct st *s = ud;

	if (code >= 0 || msg[0] == '\0')
		abort();
	s->errors++;
	mixu(s, (uint64_t)(int64_t)code);
	mix(s, msg, strlen(msg));
}

/* Feed everything, continuing after pauses; cuts come from rng when set. */
static int
feed_all(struct imap_parser *p, struct st *s, const uint8_t *d, size_t n,
    uint32_t rng)
{
	size_t at = 0, piece;
	int rc = 0;

	while (at < n) {
		piece = n - at;
		if (rng) {
			rng = rng * 1103515245u + 12345u;
			piece = 1 + (rng >> 16) % 17;
			if ((rng >> 8 & 7) == 0)
				piece = 1 + (rng >> 12) % 700;
			if (piece > n - at)
				piece = n - at;
		}
		rc = imap_parser_feed(p, d + at, piece);
		if (rc < 0) {
			if (imap_parser_feed(p, "x\r\n", 3) != rc ||
			    imap_parser_consumed(p) != 0)
				abort();	/* refused until reset */
			break;
		}
		if (rc == IMAP_PAUSE) {
			if (imap_parser_consumed(p) > piece ||
			    imap_parser_pending(p) != 0)
				abort();
			at += imap_parser_consumed(p);
		} else {
			if (imap_parser_consumed(p) != piece)
				abort();
			at += piece;
		}
	}
	mixu(s, (uint64_t)(int64_t)(rc < 0 ? rc : 0));
	if (rc >= 0)	/* after an error, pending depends on the cuts */
		mixu(s, imap_parser_pending(p));
	if (s->errors > 1 || (rc < 0) != (s->errors == 1))
		abort();
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_limits lim;
	struct imap_callbacks cb = {
		NULL, on_response, literal_begin, literal_data, literal_end,
		on_error
	};
	struct imap_parser *p;
	struct st a, b, c;
	uint32_t rng;

	if (size < 4)
		return 0;
	imap_limits_default(&lim);
	if (!(data[3] & 0x80)) {	/* small limits, to reach them */
		lim.max_depth = 1 + (data[0] & 7) * 3u;
		lim.max_tokens = 4 + (size_t)(data[0] >> 3) * 8;
		lim.max_response = 24 + (size_t)data[1] * 8;
		lim.max_inline = (size_t)data[1] * 4;
		lim.max_literal = 8 + (uint64_t)data[1] * 64;
	}
	rng = (uint32_t)data[2] << 8 | data[3] | 1;
	memset(&a, 0, sizeof a);
	a.policy = data[3] & 3;
	if (data[2] & 0x80)
		a.abort_at = 1 + (data[2] & 0x0f);
	if (a.policy == 3) {
		cb.literal_begin = NULL;
		cb.literal_data = NULL;
		cb.literal_end = NULL;
	}
	b = c = a;
	data += 4;
	size -= 4;

	cb.ud = &a;
	if ((p = imap_parser_new(&cb, &lim)) == NULL)
		return 0;
	feed_all(p, &a, data, size, rng);
	imap_parser_free(p);

	cb.ud = &b;
	if ((p = imap_parser_new(&cb, &lim)) == NULL)
		return 0;
	feed_all(p, &b, data, size, 0);
	if (a.h != b.h)
		abort();	/* pieces and whole disagree */

	/* the same parser after a reset behaves like a new one */
	c.h = 0;
	imap_parser_reset(p);
	b.errors = b.events = 0;
	b.in_lit = 0;
	b.h = 0;
	feed_all(p, &b, data, size, 0);
	cb.ud = &c;
	imap_parser_free(p);
	if ((p = imap_parser_new(&cb, &lim)) == NULL)
		return 0;
	feed_all(p, &c, data, size, 0);
	imap_parser_free(p);
	if (b.h != c.h)
		abort();
	return 0;
}
