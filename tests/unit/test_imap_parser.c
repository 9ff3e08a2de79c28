/*
 * IMAP response parser tests.
 *
 * Every transcript in tests/fixtures/imap/NAME.txt is fed whole, split in
 * two at every byte, in 1-byte pieces and in pseudo-random pieces; the
 * events, serialized to text, must be identical each time and equal to
 * NAME.expected (EMAILVAULT_REGEN=1 rewrites those; review the diff).
 * Then come checks of accessor values, limits and malformed input.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "imap/parser.h"

/* ---- a growing string --------------------------------------------------- */

struct sb {
	char *p;
	size_t len, cap;
};

static void
sb_add(struct sb *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->len + n + 1)
			cap *= 2;
		if ((b->p = realloc(b->p, cap)) == NULL)
			abort();
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sb_printf(struct sb *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void
sb_esc(struct sb *b, const char *s, size_t n)
{
	size_t i;

	sb_add(b, "\"", 1);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			sb_printf(b, "\\%c", c);
		else if (c == '\r')
			sb_add(b, "\\r", 2);
		else if (c == '\n')
			sb_add(b, "\\n", 2);
		else if (c < 0x20 || c >= 0x7f)
			sb_printf(b, "\\x%02x", c);
		else
			sb_add(b, (const char *)&c, 1);
	}
	sb_add(b, "\"", 1);
}

static char *
sb_take(struct sb *b)
{
	char *p = b->p ? b->p : strdup("");

	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}

/* ---- serializing events ---------------------------------------------- */

enum { POLICY_BODIES, POLICY_INLINE, POLICY_STREAM, POLICY_NOCB };

struct run {
	struct sb ev;
	struct sb lit;		/* streamed literal bytes, merged */
	int policy;
	int errors;
	int bad_tree;		/* a count or link inconsistency */
	int pause_after;	/* return IMAP_PAUSE from the n-th response */
	uint64_t lit_total;	/* streamed bytes, all literals */
	int responses;
	int (*check)(const struct imap_response *r, void *arg);
	void *arg;
};

static void
tree(struct run *ru, const struct imap_node *n)
{
	const struct imap_node *c;
	const char *s;
	size_t len, count = 0;

	switch (imap_node_type(n)) {
	case IMAP_NODE_ATOM:
		s = imap_node_bytes(n, &len);
		sb_add(&ru->ev, s, len);
		if (s[len] != '\0')
			ru->bad_tree = 1;
		break;
	case IMAP_NODE_QUOTED:
		s = imap_node_bytes(n, &len);
		sb_esc(&ru->ev, s, len);
		break;
	case IMAP_NODE_LITERAL:
		s = imap_node_bytes(n, &len);
		sb_printf(&ru->ev, "%s{%zu}", imap_node_is_literal8(n) ?
		    "~" : "", len);
		sb_esc(&ru->ev, s, len);
		if (imap_node_size(n) != len)
			ru->bad_tree = 1;
		break;
	case IMAP_NODE_STREAMED:
		sb_printf(&ru->ev, "<%sstream %llu>",
		    imap_node_is_literal8(n) ? "literal8 " : "",
		    (unsigned long long)imap_node_size(n));
		if (imap_node_bytes(n, &len) != NULL)
			ru->bad_tree = 1;
		break;
	case IMAP_NODE_NIL:
		sb_add(&ru->ev, "NIL", 3);
		break;
	case IMAP_NODE_LIST:
		sb_add(&ru->ev, "(", 1);
		for (c = imap_node_child(n); c; c = imap_node_next(c)) {
			if (count++)
				sb_add(&ru->ev, " ", 1);
			tree(ru, c);
		}
		sb_add(&ru->ev, ")", 1);
		if (count != imap_node_count(n))
			ru->bad_tree = 1;
		break;
	default:
		ru->bad_tree = 1;
	}
}

static const char *
kind_name(enum imap_resp_kind k)
{
	switch (k) {
	case IMAP_RESP_TAGGED: return "TAGGED";
	case IMAP_RESP_STATUS: return "STATUS";
	case IMAP_RESP_DATA: return "DATA";
	case IMAP_RESP_CONTINUE: return "CONTINUE";
	}
	return "?";
}

static int
on_response(void *ud, const struct imap_response *r)
{
	struct run *ru = ud;

	sb_printf(&ru->ev, "%s", kind_name(r->kind));
	if (r->tag)
		sb_printf(&ru->ev, " tag=%s", r->tag);
	if (r->status)
		sb_printf(&ru->ev, " %s", imap_status_name(r->status));
	if (r->code.id != IMAP_CODE_NONE) {
		sb_printf(&ru->ev, " [%s%s", r->code.name,
		    r->code.id == IMAP_CODE_OTHER ? "?" : "");
		if (r->code.raw_len) {
			sb_add(&ru->ev, " raw=", 5);
			sb_esc(&ru->ev, r->code.raw, r->code.raw_len);
		}
		if (r->code.args) {
			sb_add(&ru->ev, " args=", 6);
			tree(ru, r->code.args);
		}
		sb_add(&ru->ev, "]", 1);
	}
	if (r->kind == IMAP_RESP_DATA) {
		if (r->has_number)
			sb_printf(&ru->ev, " %u", (unsigned)r->number);
		sb_printf(&ru->ev, " %s%s ", r->keyword,
		    r->kw == IMAP_KW_OTHER ? "?" : "");
		tree(ru, r->data);
	} else {
		sb_add(&ru->ev, " text=", 6);
		sb_esc(&ru->ev, r->text, r->text_len);
	}
	sb_printf(&ru->ev, " wire=%llu\n", (unsigned long long)r->wire_bytes);
	ru->responses++;
	if (ru->check && ru->check(r, ru->arg) < 0)
		return -1;
	if (ru->pause_after && ru->responses == ru->pause_after)
		return IMAP_PAUSE;
	return 0;
}

static int
literal_begin(void *ud, const struct imap_literal_info *li)
{
	struct run *ru = ud;
	int stream;

	switch (ru->policy) {
	case POLICY_INLINE:
		stream = 0;
		break;
	case POLICY_STREAM:
		stream = 1;
		break;
	default:	/* what the client does: message bodies to disk */
		stream = li->item_len > 0 &&
		    (strncmp(li->item, "BODY[", 5) == 0 ||
		    strncmp(li->item, "BINARY[", 7) == 0 ||
		    strcmp(li->item, "RFC822") == 0);
	}
	sb_printf(&ru->ev, "LITERAL %llu%s%s item=%s",
	    (unsigned long long)li->size, li->literal8 ? " lit8" : "",
	    li->nonsync ? " nonsync" : "", li->item_len ? li->item : "-");
	if (li->has_number)
		sb_printf(&ru->ev, " n=%u", (unsigned)li->number);
	if (li->has_uid)
		sb_printf(&ru->ev, " uid=%u", (unsigned)li->uid);
	sb_printf(&ru->ev, " kw=%s depth=%u %s\n", li->keyword, li->depth,
	    stream ? "stream" : "inline");
	if (strlen(li->item) != li->item_len)
		ru->bad_tree = 1;
	return stream ? IMAP_LIT_STREAM : IMAP_LIT_INLINE;
}

static int
literal_data(void *ud, const char *data, size_t len)
{
	struct run *ru = ud;

	if (len == 0)
		ru->bad_tree = 1;	/* no empty chunks */
	sb_add(&ru->lit, data, len);
	ru->lit_total += len;
	return 0;
}

static int
literal_end(void *ud)
{
	struct run *ru = ud;

	sb_add(&ru->ev, "STREAMED ", 9);
	sb_esc(&ru->ev, ru->lit.p ? ru->lit.p : "", ru->lit.len);
	sb_add(&ru->ev, "\n", 1);
	ru->lit.len = 0;
	return 0;
}

static void
on_error(void *ud, int code, const char *msg)
{
	struct run *ru = ud;

	ru->errors++;
	sb_printf(&ru->ev, "ERROR %d %s\n", code, msg);
}

static struct imap_parser *
new_parser(struct run *ru, const struct imap_limits *lim)
{
	struct imap_callbacks cb = {
		ru, on_response, literal_begin, literal_data, literal_end,
		on_error
	};
	struct imap_parser *p;

	if (ru->policy == POLICY_NOCB) {
		cb.literal_begin = NULL;
		cb.literal_data = NULL;
		cb.literal_end = NULL;
	}
	p = imap_parser_new(&cb, lim);
	if (p == NULL)
		abort();
	return p;
}

/* Feed data cut at the given offsets (ascending); return the events. */
static char *
run_cuts(const char *data, size_t len, const size_t *cuts, size_t ncuts,
    int policy, const struct imap_limits *lim)
{
	struct run ru;
	struct imap_parser *p;
	size_t i, at = 0, end;
	int rc = 0;

	memset(&ru, 0, sizeof ru);
	ru.policy = policy;
	p = new_parser(&ru, lim);
	for (i = 0; i <= ncuts && rc == 0; i++) {
		end = i < ncuts ? cuts[i] : len;
		rc = imap_parser_feed(p, data + at, end - at);
		at = end;
	}
	sb_printf(&ru.ev, "EOF rc=%d pending=%llu errors=%d%s\n", rc,
	    (unsigned long long)imap_parser_pending(p), ru.errors,
	    ru.bad_tree ? " BAD-TREE" : "");
	imap_parser_free(p);
	free(ru.lit.p);
	return sb_take(&ru.ev);
}

static char *
run_whole(const char *data, size_t len, int policy,
    const struct imap_limits *lim)
{
	return run_cuts(data, len, NULL, 0, policy, lim);
}

/* Feed in n-byte pieces. */
static char *
run_pieces(const char *data, size_t len, size_t n, int policy,
    const struct imap_limits *lim)
{
	struct run ru;
	struct imap_parser *p;
	size_t at;
	int rc = 0;

	memset(&ru, 0, sizeof ru);
	ru.policy = policy;
	p = new_parser(&ru, lim);
	for (at = 0; at < len && rc == 0; at += n)
		rc = imap_parser_feed(p, data + at, len - at < n ? len - at : n);
	sb_printf(&ru.ev, "EOF rc=%d pending=%llu errors=%d%s\n", rc,
	    (unsigned long long)imap_parser_pending(p), ru.errors,
	    ru.bad_tree ? " BAD-TREE" : "");
	imap_parser_free(p);
	free(ru.lit.p);
	return sb_take(&ru.ev);
}

/* ---- fixtures ------------------------------------------------------------ */

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct sb b = { 0 };
	char buf[4096];
	size_t n;

	if (f == NULL)
		return NULL;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		sb_add(&b, buf, n);
	fclose(f);
	*len = b.len;
	return sb_take(&b);
}

static const char *
fixtures_dir(void)
{
	const char *d = getenv("EMAILVAULT_FIXTURES");

	return d ? d : "tests/fixtures";
}

/* Print the first differing line of two event logs. */
static void
show_diff(const char *what, const char *a, const char *b)
{
	size_t line = 1;

	while (*a && *a == *b) {
		if (*a == '\n')
			line++;
		a++;
		b++;
	}
	fprintf(stderr, "  %s: first difference on line %zu:\n    got:  %.160s\n"
	    "    want: %.160s\n", what, line, a, b);
}

static void
check_fixture(const char *name, int policy, const char *suffix)
{
	char path[512];
	char *data, *want, *whole, *got;
	size_t len, wlen, i, cut[3];
	uint64_t seed = 12345;	/* LCG kept below 2^31: no wraparound */
	int bad = 0, k;

	snprintf(path, sizeof path, "%s/imap/%s.txt", fixtures_dir(), name);
	data = read_file(path, &len);
	CHECK(data != NULL);
	if (data == NULL) {
		fprintf(stderr, "  cannot read %s\n", path);
		return;
	}
	whole = run_whole(data, len, policy, NULL);
	snprintf(path, sizeof path, "%s/imap/%s%s.expected", fixtures_dir(),
	    name, suffix);
	if (getenv("EMAILVAULT_REGEN")) {
		FILE *f = fopen(path, "wb");

		if (f) {
			fputs(whole, f);
			fclose(f);
		}
	}
	want = read_file(path, &wlen);
	CHECK(want != NULL);
	if (want && strcmp(whole, want) != 0) {
		CHECK_STR(name, "matches its .expected");
		show_diff(name, whole, want);
	}
	CHECK(strstr(whole, "BAD-TREE") == NULL);
	CHECK(strstr(whole, "ERROR") == NULL);
	CHECK(strstr(whole, "EOF rc=0 pending=0 errors=0\n") != NULL);

	/* two pieces, cut at every byte */
	for (i = 0; i <= len && !bad; i++) {
		got = run_cuts(data, len, &i, 1, policy, NULL);
		if (strcmp(got, whole) != 0) {
			fprintf(stderr, "  %s: split at %zu differs\n", name, i);
			show_diff(name, got, whole);
			bad = 1;
		}
		free(got);
	}
	CHECK(!bad);

	/* small pieces */
	for (k = 1; k <= 7 && !bad; k++) {
		got = run_pieces(data, len, (size_t)k, policy, NULL);
		if (strcmp(got, whole) != 0) {
			fprintf(stderr, "  %s: %d-byte pieces differ\n", name, k);
			show_diff(name, got, whole);
			bad = 1;
		}
		free(got);
	}
	CHECK(!bad);

	/* three pieces at pseudo-random places */
	for (k = 0; k < 300 && !bad && len > 0; k++) {
		seed = (seed * 1103515245u + 12345u) % 2147483648u;
		cut[0] = (seed >> 8) % (len + 1);
		seed = (seed * 1103515245u + 12345u) % 2147483648u;
		cut[1] = (seed >> 8) % (len + 1);
		if (cut[1] < cut[0]) {
			cut[2] = cut[0];
			cut[0] = cut[1];
			cut[1] = cut[2];
		}
		got = run_cuts(data, len, cut, 2, policy, NULL);
		if (strcmp(got, whole) != 0) {
			fprintf(stderr, "  %s: cuts %zu,%zu differ\n", name,
			    cut[0], cut[1]);
			bad = 1;
		}
		free(got);
	}
	CHECK(!bad);
	free(data);
	free(want);
	free(whole);
}

static const char *const fixtures[] = {
	"dovecot_login", "login_failures", "gmail_session", "list_variants",
	"examine", "uid_fetch", "search", "idle", "misc", "rfc3501_sample",
};

static void
test_fixtures(void)
{
	size_t i;

	for (i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++)
		check_fixture(fixtures[i], POLICY_BODIES, "");
}

/* The same transcripts with every literal inline or every one streamed. */
static void
test_fixtures_policies(void)
{
	check_fixture("uid_fetch", POLICY_INLINE, ".inline");
	check_fixture("uid_fetch", POLICY_NOCB, ".nocb");
	check_fixture("list_variants", POLICY_STREAM, ".stream");
}

/* ---- values through the accessors --------------------------------------- */

/* Parse text whole and hand each response to fn. Returns responses seen. */
static int
parse_with(const char *text, int policy,
    int (*fn)(const struct imap_response *, void *), void *arg)
{
	struct run ru;
	struct imap_parser *p;
	int rc;

	memset(&ru, 0, sizeof ru);
	ru.policy = policy;
	ru.check = fn;
	ru.arg = arg;
	p = new_parser(&ru, NULL);
	rc = imap_parser_feed(p, text, strlen(text));
	CHECK_INT(rc, IMAP_OK);
	CHECK_INT(ru.errors, 0);
	imap_parser_free(p);
	free(ru.ev.p);
	free(ru.lit.p);
	return ru.responses;
}

struct examine {
	uint64_t uidvalidity, uidnext, highestmodseq, unseen;
	uint32_t exists;
	int readonly, nflags, permflags_star;
};

static int
examine_cb(const struct imap_response *r, void *arg)
{
	struct examine *e = arg;
	const struct imap_node *n;
	uint64_t v;

	switch (r->code.id) {
	case IMAP_CODE_UIDVALIDITY:
		CHECK_INT(imap_code_u64(&r->code, &e->uidvalidity), 0);
		break;
	case IMAP_CODE_UIDNEXT:
		CHECK_INT(imap_code_u64(&r->code, &e->uidnext), 0);
		break;
	case IMAP_CODE_HIGHESTMODSEQ:
		CHECK_INT(imap_code_u64(&r->code, &e->highestmodseq), 0);
		break;
	case IMAP_CODE_UNSEEN:
		CHECK_INT(imap_code_u64(&r->code, &e->unseen), 0);
		break;
	case IMAP_CODE_READ_ONLY:
		e->readonly = 1;
		CHECK_INT(imap_code_u64(&r->code, &v), -1);
		break;
	case IMAP_CODE_PERMANENTFLAGS:
		n = imap_node_child(r->code.args);
		CHECK_INT(imap_node_type(n), IMAP_NODE_LIST);
		for (n = imap_node_child(n); n; n = imap_node_next(n))
			if (imap_node_atom_is(n, "\\*"))
				e->permflags_star = 1;
		break;
	default:
		break;
	}
	if (r->kw == IMAP_KW_EXISTS) {
		CHECK(r->has_number);
		e->exists = r->number;
		CHECK_INT(imap_node_count(r->data), 0);
	}
	if (r->kw == IMAP_KW_FLAGS)
		e->nflags = (int)imap_node_count(imap_node_child(r->data));
	return 0;
}

static void
test_examine_values(void)
{
	struct examine e;
	const char *t =
	    "* 172 EXISTS\r\n"
	    "* OK [UNSEEN 12] Message 12 is first unseen\r\n"
	    "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
	    "* OK [UIDNEXT 4392] Predicted next UID\r\n"
	    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
	    "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n"
	    "* OK [HIGHESTMODSEQ 90060115205545359] Highest\r\n"
	    "A142 OK [READ-ONLY] EXAMINE completed\r\n";

	memset(&e, 0, sizeof e);
	CHECK_INT(parse_with(t, POLICY_BODIES, examine_cb, &e), 8);
	CHECK_INT(e.exists, 172);
	CHECK_INT(e.unseen, 12);
	CHECK_INT(e.uidvalidity, 3857529045u);
	CHECK_INT(e.uidnext, 4392);
	CHECK(e.highestmodseq == 90060115205545359ull);
	CHECK_INT(e.readonly, 1);
	CHECK_INT(e.nflags, 5);
	CHECK_INT(e.permflags_star, 1);
}

struct fetch {
	uint32_t uid, seq;
	uint64_t size, body_size;
	int seen, body_streamed;
	char date[64];
	struct sb body;		/* streamed bytes */
	int ends;
};

static int
fetch_cb(const struct imap_response *r, void *arg)
{
	struct fetch *f = arg;
	const struct imap_node *n;
	const char *s;
	size_t len;

	if (r->kind == IMAP_RESP_TAGGED) {
		CHECK_STR(r->tag, "A5");
		CHECK_INT(r->status, IMAP_STATUS_OK);
		CHECK_STR(r->text, "done");
		CHECK(r->code.name == NULL);
		CHECK_STR(r->code.raw, "");
		CHECK(r->data == NULL);
		return 0;
	}
	CHECK_INT(r->kw, IMAP_KW_FETCH);
	f->seq = r->number;
	CHECK_INT(imap_node_u32(imap_fetch_item(r, "uid"), &f->uid), 0);
	CHECK_INT(imap_node_u64(imap_fetch_item(r, "RFC822.SIZE"), &f->size),
	    0);
	s = imap_node_bytes(imap_fetch_item(r, "INTERNALDATE"), &len);
	CHECK(s != NULL);
	if (s)
		snprintf(f->date, sizeof f->date, "%s", s);
	for (n = imap_node_child(imap_fetch_item(r, "FLAGS")); n;
	    n = imap_node_next(n))
		if (imap_node_atom_is(n, "\\seen"))
			f->seen = 1;
	n = imap_fetch_item(r, "BODY[]");
	CHECK(n != NULL);
	if (n) {
		f->body_streamed = imap_node_type(n) == IMAP_NODE_STREAMED;
		f->body_size = imap_node_size(n);
	}
	CHECK(imap_fetch_item(r, "BODY") == NULL);
	CHECK(imap_fetch_item(r, "\\Seen") == NULL);	/* values not names */
	CHECK(imap_fetch_item(r, "1") == NULL);
	return 0;
}

static void
test_fetch_values(void)
{
	struct fetch f;
	const char *t =
	    "* 12 FETCH (UID 1001 FLAGS (\\Seen $Forwarded) INTERNALDATE "
	    "\"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 25 BODY[] {25}\r\n"
	    "Subject: x\r\n\r\n(a {5}\r\n)\r\n"
	    ")\r\nA5 OK done\r\n";

	memset(&f, 0, sizeof f);
	CHECK_INT(parse_with(t, POLICY_BODIES, fetch_cb, &f), 2);
	CHECK_INT(f.seq, 12);
	CHECK_INT(f.uid, 1001);
	CHECK_INT(f.size, 25);
	CHECK_INT(f.body_size, 25);
	CHECK_INT(f.body_streamed, 1);
	CHECK_INT(f.seen, 1);
	CHECK_STR(f.date, "17-Jul-1996 02:44:25 -0700");
	memset(&f, 0, sizeof f);
	CHECK_INT(parse_with(t, POLICY_INLINE, fetch_cb, &f), 2);
	CHECK_INT(f.body_streamed, 0);
	CHECK_INT(f.body_size, 25);
}

static int
misc_cb(const struct imap_response *r, void *arg)
{
	const struct imap_node *n, *l;
	const char *s;
	size_t len;
	uint32_t v;

	(void)arg;
	switch (r->kw) {
	case IMAP_KW_STATUS:
		n = imap_node_child(r->data);
		CHECK_STR(imap_node_bytes(n, &len), "Sent Items");
		l = imap_node_next(n);
		CHECK_INT(imap_node_u32(imap_node_after(l, "uidnext"), &v), 0);
		CHECK_INT(v, 44292);
		CHECK(imap_node_after(l, "RECENT") == NULL);
		CHECK(imap_node_after(l, "MESSAGES") != NULL);
		CHECK_INT(imap_node_u32(imap_node_after(l, "MESSAGES"), &v), -1);
		break;
	case IMAP_KW_LIST:
		n = imap_node_child(r->data);
		CHECK_INT(imap_node_count(n), 2);
		CHECK(imap_node_atom_is(imap_node_child(n), "\\HasNoChildren"));
		CHECK(imap_node_atom_is(imap_node_next(imap_node_child(n)),
		    "\\NOSELECT"));
		n = imap_node_next(n);
		CHECK_INT(imap_node_type(n), IMAP_NODE_NIL);
		CHECK(imap_node_bytes(n, &len) == NULL);
		n = imap_node_next(n);
		s = imap_node_bytes(n, &len);
		CHECK_INT(len, 5);
		CHECK(s && memcmp(s, "a\"b\\c", 5) == 0);
		CHECK(imap_node_next(n) == NULL);
		break;
	case IMAP_KW_ESEARCH:
		l = r->data;
		CHECK_INT(imap_node_count(l), 10);
		n = imap_node_child(imap_node_child(l));
		CHECK(imap_node_atom_is(n, "TAG"));
		CHECK_STR(imap_node_bytes(imap_node_next(n), &len), "A4");
		s = imap_node_bytes(imap_node_after(l, "ALL"), &len);
		CHECK_STR(s, "1:3,5,7:12");
		CHECK_INT(imap_node_u32(imap_node_after(l, "COUNT"), &v), 0);
		CHECK_INT(v, 10);
		break;
	case IMAP_KW_SEARCH:
		CHECK_INT(imap_node_count(r->data), 0);
		CHECK(imap_node_child(r->data) == NULL);
		break;
	default:
		CHECK(0);
	}
	return 0;
}

static void
test_misc_values(void)
{
	const char *t =
	    "* STATUS {10}\r\nSent Items (MESSAGES x UIDNEXT 44292)\r\n"
	    "* LIST (\\HasNoChildren \\Noselect) NIL \"a\\\"b\\\\c\"\r\n"
	    "* ESEARCH (TAG \"A4\") UID ALL 1:3,5,7:12 COUNT 10 MIN 1 MAX 12\r\n"
	    "* SEARCH\r\n";

	CHECK_INT(parse_with(t, POLICY_BODIES, misc_cb, NULL), 4);
}

static void
test_lookups(void)
{
	CHECK_INT(imap_code_lookup("uidvalidity", 11), IMAP_CODE_UIDVALIDITY);
	CHECK_INT(imap_code_lookup("READ-ONLY", 9), IMAP_CODE_READ_ONLY);
	CHECK_INT(imap_code_lookup("THROTTLED", 9), IMAP_CODE_THROTTLED);
	CHECK_INT(imap_code_lookup("THROTTLE", 8), IMAP_CODE_OTHER);
	CHECK_INT(imap_code_lookup("", 0), IMAP_CODE_OTHER);
	CHECK_STR(imap_code_name(IMAP_CODE_AUTHENTICATIONFAILED),
	    "AUTHENTICATIONFAILED");
	CHECK(imap_code_name(IMAP_CODE_NONE) == NULL);
	CHECK(imap_code_name((enum imap_code_id)9999) == NULL);
	CHECK_INT(imap_kw_lookup("fetch", 5), IMAP_KW_FETCH);
	CHECK_INT(imap_kw_lookup("FETCHX", 6), IMAP_KW_OTHER);
	CHECK_STR(imap_status_name(IMAP_STATUS_PREAUTH), "PREAUTH");
}

static void
test_numbers(void)
{
	uint32_t v32;
	uint64_t v64;

	CHECK_INT(imap_parse_u32("4294967295", 10, &v32), 0);
	CHECK_INT(v32, 4294967295u);
	CHECK_INT(imap_parse_u32("4294967296", 10, &v32), -1);
	CHECK_INT(imap_parse_u32("", 0, &v32), -1);
	CHECK_INT(imap_parse_u32("-1", 2, &v32), -1);
	CHECK_INT(imap_parse_u32("1 ", 2, &v32), -1);
	CHECK_INT(imap_parse_u64("18446744073709551615", 20, &v64), 0);
	CHECK(v64 == UINT64_MAX);
	CHECK_INT(imap_parse_u64("18446744073709551616", 20, &v64), -1);
	CHECK_INT(imap_parse_u64("99999999999999999999", 20, &v64), -1);
	CHECK_INT(imap_parse_u64("007", 3, &v64), 0);
	CHECK_INT(v64, 7);
}

/* literal_begin learns the UID when it came first in the FETCH. */
static void
test_literal_uid(void)
{
	const char *t =
	    "* 1 FETCH (BODY[] {1}\r\nx UID 5 BODY[1] {1}\r\ny)\r\n"
	    "* 2 FETCH (X UID UID 7 BODY[] {0}\r\n)\r\n"
	    "* 3 FETCH (X UID 9 Y (UID 8) BODY[] {0}\r\n)\r\n"
	    "* 4 XFETCH (UID 6 BODY[] {0}\r\n)\r\n";
	char *s = run_whole(t, strlen(t), POLICY_STREAM, NULL);

	CHECK(strstr(s, "LITERAL 1 item=BODY[] n=1 kw=FETCH") != NULL);
	CHECK(strstr(s, "LITERAL 1 item=BODY[1] n=1 uid=5 kw=FETCH") != NULL);
	CHECK(strstr(s, "LITERAL 0 item=BODY[] n=2 uid=7 kw=FETCH") != NULL);
	CHECK(strstr(s, "LITERAL 0 item=BODY[] n=3 kw=FETCH") != NULL);
	CHECK(strstr(s, "LITERAL 0 item=BODY[] n=4 kw=XFETCH") != NULL);
	CHECK(strstr(s, "EOF rc=0 pending=0 errors=0") != NULL);
	free(s);
}

static void expect_error(const char *, size_t, const struct imap_limits *,
    int, int, const char *);

static int
edges_cb(const struct imap_response *r, void *arg)
{
	(void)arg;
	if (r->kw != IMAP_KW_FETCH)
		CHECK(imap_fetch_item(r, "UID") == NULL);
	else if (r->number == 1)	/* odd item list: no value for X */
		CHECK(imap_fetch_item(r, "X") == NULL);
	else
		CHECK(imap_fetch_item(r, "UID") == NULL);	/* no list */
	return 0;
}

static void
test_edges(void)
{
	const char *t =
	    "* OK [X {5}] literal in a code is text\r\n"
	    "* OK [Y ((a)] unbalanced\r\n"
	    "* 1 FETCH (UID 5 X)\r\n"
	    "* 2 FETCH UID 5\r\n"
	    "* 3 EXISTS\r\n";
	char *s;

	CHECK_INT(parse_with(t, POLICY_BODIES, edges_cb, NULL), 5);
	s = run_whole(t, 40, POLICY_BODIES, NULL);
	CHECK_STR(s, "STATUS OK [X? raw=\"{5}\"] text=\"literal in a code is "
	    "text\" wire=40\nEOF rc=0 pending=0 errors=0\n");
	free(s);
	expect_error("t\xe9 OK x\r\n", SIZE_MAX, NULL, POLICY_BODIES,
	    IMAP_ERR_SYNTAX, "bad tag");
}

/* ---- errors and limits ------------------------------------------------- */

struct bad {
	const char *in;
	int code;
	const char *msg;	/* substring of the message */
};

static void
expect_error(const char *in, size_t len, const struct imap_limits *lim,
    int policy, int code, const char *msg)
{
	struct run ru;
	struct imap_parser *p;
	size_t at;
	int rc = 0, piece, before;

	if (len == SIZE_MAX)
		len = strlen(in);
	/* whole, then byte by byte: same error, reported once */
	for (piece = 0; piece < 2; piece++) {
		memset(&ru, 0, sizeof ru);
		ru.policy = policy;
		p = new_parser(&ru, lim);
		if (piece == 0) {
			rc = imap_parser_feed(p, in, len);
		} else {
			for (at = 0, rc = 0; at < len && rc == 0; at++)
				rc = imap_parser_feed(p, in + at, 1);
		}
		CHECK_INT(rc, code);
		CHECK_INT(imap_parser_error(p), code);
		CHECK_INT(ru.errors, 1);
		if (strstr(imap_parser_errmsg(p), msg) == NULL) {
			CHECK_STR(imap_parser_errmsg(p), msg);
			fprintf(stderr, "  input: %.60s\n", in);
		}
		/* refused until reset */
		CHECK_INT(imap_parser_feed(p, "* 1 EXISTS\r\n", 12), code);
		CHECK_INT(imap_parser_consumed(p), 0);
		CHECK_INT(ru.errors, 1);
		before = ru.responses;
		imap_parser_reset(p);
		CHECK_INT(imap_parser_error(p), 0);
		CHECK_STR(imap_parser_errmsg(p), "");
		CHECK_INT(imap_parser_feed(p, "* 1 EXISTS\r\n", 12), 0);
		CHECK_INT(ru.responses, before + 1);
		imap_parser_free(p);
		free(ru.ev.p);
		free(ru.lit.p);
	}
}

static void
test_malformed(void)
{
	static const struct bad bad[] = {
		{ "* 1 FETCH (UID 1))\r\n", IMAP_ERR_SYNTAX,
		    "unexpected ')' at byte 17 of line" },
		{ "* 1 FETCH (UID 1\r\n", IMAP_ERR_SYNTAX,
		    "line ends inside 1 open list" },
		{ "* LIST () \"/\" \"a\\nb\"\r\n", IMAP_ERR_SYNTAX,
		    "bad escape in quoted string at byte 16" },
		{ "* LIST () \"/\" \"ab\\\r\n", IMAP_ERR_SYNTAX, "bad escape" },
		{ "* LIST () \"/\" \"abc\r\n", IMAP_ERR_SYNTAX,
		    "unterminated quoted string at byte 14" },
		{ "* LIST () \"/\" \"a\rb\"\r\n", IMAP_ERR_SYNTAX,
		    "bare CR at byte 16" },
		{ "* 1 FETCH (BODY[] {5x}\r\n", IMAP_ERR_SYNTAX,
		    "bad literal at byte 18" },
		{ "* 1 FETCH (BODY[] {}\r\n", IMAP_ERR_SYNTAX,
		    "bad literal size" },
		{ "* 1 FETCH (BODY[] {5} )\r\n", IMAP_ERR_SYNTAX,
		    "literal must end the line" },
		{ "* 1 FETCH (BODY[] {3}\r\nabcX)\r\n", IMAP_ERR_SYNTAX,
		    "expected space before 'X' at byte 0" },
		{ "* X a(b)\r\n", IMAP_ERR_SYNTAX, "expected space before '('" },
		{ "* X \"a\"b\r\n", IMAP_ERR_SYNTAX, "expected space before 'b'" },
		{ "* X a\tb\r\n", IMAP_ERR_SYNTAX, "control character 0x09" },
		{ "\r\n", IMAP_ERR_SYNTAX, "empty line" },
		{ "*\r\n", IMAP_ERR_SYNTAX, "expected space after '*'" },
		{ "*OK\r\n", IMAP_ERR_SYNTAX, "expected space after '*'" },
		{ "* \r\n", IMAP_ERR_SYNTAX, "missing keyword" },
		{ "* 12\r\n", IMAP_ERR_SYNTAX, "missing keyword" },
		{ "* 99999999999 EXISTS\r\n", IMAP_ERR_SYNTAX,
		    "bad message number" },
		{ "* FE(TCH\r\n", IMAP_ERR_SYNTAX, "bad keyword" },
		{ "a1 FOO bar\r\n", IMAP_ERR_SYNTAX,
		    "expected OK, NO or BAD at byte 3" },
		{ "a1 PREAUTH x\r\n", IMAP_ERR_SYNTAX, "expected OK, NO or BAD" },
		{ "a1\r\n", IMAP_ERR_SYNTAX, "expected OK, NO or BAD" },
		{ "a(1 OK x\r\n", IMAP_ERR_SYNTAX, "bad tag" },
		{ "a+1 OK x\r\n", IMAP_ERR_SYNTAX, "bad tag" },
		{ " a1 OK x\r\n", IMAP_ERR_SYNTAX, "bad tag" },
		{ "* 1 FETCH (UID 1)\r\n* OK done\r\nx\r\n", IMAP_ERR_SYNTAX,
		    "expected OK, NO or BAD" },
	};
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_error(bad[i].in, strlen(bad[i].in), NULL, POLICY_BODIES,
		    bad[i].code, bad[i].msg);
	/* NUL outside a literal */
	expect_error("* OK a\0b\r\n", 10, NULL, POLICY_BODIES,
	    IMAP_ERR_SYNTAX, "NUL at byte 6 of line");
	expect_error("* X \"a\0b\"\r\n", 11, NULL, POLICY_BODIES,
	    IMAP_ERR_SYNTAX, "NUL at byte 6 of line");
}

static void
test_limits(void)
{
	struct imap_limits lim;
	struct sb b = { 0 };
	char *s;
	int i;

	/* literal sizes */
	expect_error("* 1 FETCH (BODY[] {99999999999999999999}\r\n",
	    SIZE_MAX, NULL, POLICY_BODIES, IMAP_ERR_LITERAL,
	    "literal size 99999999999999999999 exceeds limit 2147483648");
	expect_error("* 1 FETCH (BODY[] {2147483649}\r\n", SIZE_MAX, NULL,
	    POLICY_BODIES, IMAP_ERR_LITERAL,
	    "literal size 2147483649 exceeds limit");
	expect_error("* 1 FETCH (BODY[] ~{99999999999999999999999999999999999"
	    "9999999999999999+}\r\n", SIZE_MAX, NULL, POLICY_BODIES,
	    IMAP_ERR_LITERAL,
	    "literal size 9999999999999999999999999999999999999999... exceeds");
	imap_limits_default(&lim);
	lim.max_literal = 10;
	expect_error("* 1 FETCH (BODY[] {11}\r\n", SIZE_MAX, &lim, POLICY_STREAM,
	    IMAP_ERR_LITERAL, "literal size 11 exceeds limit 10");

	/* inline cap, with and without literal_begin */
	imap_limits_default(&lim);
	lim.max_inline = 4;
	expect_error("* 1 FETCH (X {5}\r\n", SIZE_MAX, &lim, POLICY_INLINE,
	    IMAP_ERR_INLINE, "inline literal of 5 bytes exceeds limit 4");
	expect_error("* 1 FETCH (X {5}\r\n", SIZE_MAX, &lim, POLICY_NOCB,
	    IMAP_ERR_INLINE, "inline literal of 5 bytes exceeds limit 4");
	s = run_whole("* 1 FETCH (X {4}\r\nabcd)\r\n", 25, POLICY_NOCB, &lim);
	CHECK_STR(s, "DATA 1 FETCH ((X {4}\"abcd\")) wire=25\n"
	    "EOF rc=0 pending=0 errors=0\n");
	free(s);

	/* response size: one long line, or lines plus inline literals */
	imap_limits_default(&lim);
	lim.max_response = 64;
	sb_add(&b, "* SEARCH", 8);
	for (i = 0; i < 20; i++)
		sb_add(&b, " 1234", 5);
	sb_add(&b, "\r\n", 2);
	expect_error(b.p, b.len, &lim, POLICY_BODIES, IMAP_ERR_TOO_LONG,
	    "response exceeds 64 bytes");
	expect_error("* 1 FETCH (A {40}\r\n"
	    "0123456789012345678901234567890123456789 B {20}\r\n",
	    SIZE_MAX, &lim, POLICY_INLINE, IMAP_ERR_TOO_LONG,
	    "response exceeds 64 bytes");
	expect_error("* 1 FETCH (A {50}\r\n", SIZE_MAX, &lim, POLICY_INLINE,
	    IMAP_ERR_TOO_LONG, "response exceeds 64 bytes");
	/* ... without an LF ever coming: memory stays bounded */
	{
		struct run ru;
		struct imap_parser *p;
		char junk[1000];

		memset(&ru, 0, sizeof ru);
		memset(junk, 'a', sizeof junk);
		p = new_parser(&ru, &lim);
		CHECK_INT(imap_parser_feed(p, junk, 60), 0);
		CHECK_INT(imap_parser_pending(p), 60);
		CHECK_INT(imap_parser_feed(p, junk, sizeof junk),
		    IMAP_ERR_TOO_LONG);
		CHECK_INT(ru.errors, 1);
		imap_parser_free(p);
		free(ru.ev.p);
	}
	/* exactly at the limit is fine */
	s = run_whole("* SEARCH 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19"
	    " 20000\r\n", 64, POLICY_BODIES, &lim);
	CHECK(strncmp(s, "DATA SEARCH (1 2 3", 18) == 0);
	CHECK(strstr(s, "EOF rc=0 pending=0 errors=0") != NULL);
	free(s);

	/* depth: 64 nested lists pass, 65 fail */
	b.len = 0;
	sb_add(&b, "* X ", 4);
	for (i = 0; i < 64; i++)
		sb_add(&b, "(", 1);
	for (i = 0; i < 64; i++)
		sb_add(&b, ")", 1);
	sb_add(&b, "\r\n", 2);
	s = run_whole(b.p, b.len, POLICY_BODIES, NULL);
	CHECK(strstr(s, "EOF rc=0 pending=0 errors=0") != NULL);
	free(s);
	b.len = 0;
	sb_add(&b, "* X ", 4);
	for (i = 0; i < 65; i++)
		sb_add(&b, "(", 1);
	sb_add(&b, "\r\n", 2);
	expect_error(b.p, b.len, NULL, POLICY_BODIES, IMAP_ERR_TOO_DEEP,
	    "lists nested deeper than 64");

	/* tokens */
	imap_limits_default(&lim);
	lim.max_tokens = 5;
	s = run_whole("* SEARCH 1 2 3 4 5\r\n", 20, POLICY_BODIES, &lim);
	CHECK_STR(s, "DATA SEARCH (1 2 3 4 5) wire=20\n"
	    "EOF rc=0 pending=0 errors=0\n");
	free(s);
	expect_error("* SEARCH 1 2 3 4 5 6\r\n", SIZE_MAX, &lim, POLICY_BODIES,
	    IMAP_ERR_TOKENS, "response has more than 5 tokens");
	expect_error("* X (((((())))))\r\n", SIZE_MAX, &lim, POLICY_BODIES,
	    IMAP_ERR_TOKENS, "more than 5 tokens");
	/* a code's tokens beyond the limit: the code is kept raw, no error */
	s = run_whole("* OK [CAPABILITY A B C D E F G] hi\r\n", 36,
	    POLICY_BODIES, &lim);
	CHECK_STR(s, "STATUS OK [CAPABILITY raw=\"A B C D E F G\"] text=\"hi\""
	    " wire=36\nEOF rc=0 pending=0 errors=0\n");
	free(s);
	free(b.p);
}

/* A streamed literal is never held: 10 MiB through a 256-byte limit. */
static void
test_streaming_unbuffered(void)
{
	struct imap_limits lim;
	struct run ru;
	struct imap_parser *p;
	static char chunk[65536];
	const char *head = "* 1 FETCH (UID 7 BODY[] {10485760}\r\n";
	size_t i;
	int rc;

	imap_limits_default(&lim);
	lim.max_response = 256;
	lim.max_inline = 16;
	memset(&ru, 0, sizeof ru);
	ru.policy = POLICY_STREAM;
	p = new_parser(&ru, &lim);
	memset(chunk, 'x', sizeof chunk);
	CHECK_INT(imap_parser_feed(p, head, strlen(head)), 0);
	for (i = 0, rc = 0; i < 160 && rc == 0; i++)
		rc = imap_parser_feed(p, chunk, sizeof chunk);
	CHECK_INT(rc, 0);
	CHECK_INT(ru.lit_total, 10485760);
	CHECK_INT(imap_parser_pending(p), 10485760 + strlen(head));
	CHECK_INT(imap_parser_feed(p, ")\r\n", 3), 0);
	CHECK_INT(ru.responses, 1);
	CHECK_INT(imap_parser_pending(p), 0);
	CHECK(strstr(ru.ev.p, "DATA 1 FETCH ((UID 7 BODY[] <stream 10485760>))"
	    " wire=10485799\n") != NULL);
	CHECK_INT(ru.errors, 0);
	imap_parser_free(p);
	free(ru.ev.p);
	free(ru.lit.p);
}

/* Pausing after a response leaves the rest to the caller (STARTTLS). */
static void
test_pause(void)
{
	struct run ru;
	struct imap_parser *p;
	const char *t = "a1 OK Begin TLS negotiation now\r\n* injected\r\n";

	memset(&ru, 0, sizeof ru);
	ru.pause_after = 1;
	p = new_parser(&ru, NULL);
	CHECK_INT(imap_parser_feed(p, t, strlen(t)), IMAP_PAUSE);
	CHECK_INT(imap_parser_consumed(p), 33);
	CHECK_INT(imap_parser_pending(p), 0);
	CHECK_INT(ru.responses, 1);
	/* continuing is allowed; here it would be plaintext injection */
	CHECK_INT(imap_parser_feed(p, t + 33, strlen(t) - 33), 0);
	CHECK_INT(imap_parser_consumed(p), strlen(t) - 33);
	CHECK_INT(ru.responses, 2);
	imap_parser_free(p);
	free(ru.ev.p);
}

static int
abort_cb(const struct imap_response *r, void *arg)
{
	(void)r;
	(void)arg;
	return -1;
}

static int
abort_literal(void *ud, const struct imap_literal_info *li)
{
	(void)ud;
	(void)li;
	return -1;
}

static int
abort_data(void *ud, const char *data, size_t len)
{
	(void)ud;
	(void)data;
	(void)len;
	return -1;
}

static void
test_abort(void)
{
	struct run ru;
	struct imap_parser *p;
	struct imap_callbacks cb = {
		&ru, on_response, abort_literal, literal_data, literal_end,
		on_error
	};
	const char *lit = "* 1 FETCH (BODY[] {3}\r\nabc)\r\n";

	memset(&ru, 0, sizeof ru);
	ru.check = abort_cb;
	p = new_parser(&ru, NULL);
	CHECK_INT(imap_parser_feed(p, "* 1 EXISTS\r\n", 12), IMAP_ERR_ABORTED);
	CHECK_STR(imap_parser_errmsg(p), "aborted by on_response");
	CHECK_INT(ru.errors, 1);
	imap_parser_free(p);
	free(ru.ev.p);

	memset(&ru, 0, sizeof ru);
	p = imap_parser_new(&cb, NULL);
	CHECK_INT(imap_parser_feed(p, lit, strlen(lit)), IMAP_ERR_ABORTED);
	CHECK_STR(imap_parser_errmsg(p), "aborted by literal_begin");
	CHECK_INT(imap_parser_consumed(p), 23);
	imap_parser_free(p);
	free(ru.ev.p);

	memset(&ru, 0, sizeof ru);
	ru.policy = POLICY_STREAM;
	cb.literal_begin = literal_begin;
	cb.literal_data = abort_data;
	p = imap_parser_new(&cb, NULL);
	CHECK_INT(imap_parser_feed(p, lit, strlen(lit)), IMAP_ERR_ABORTED);
	CHECK_STR(imap_parser_errmsg(p), "aborted by literal_data");
	CHECK_INT(ru.errors, 1);
	imap_parser_free(p);
	free(ru.ev.p);
}

/* No callbacks at all is allowed; literals are then inline. */
static void
test_no_callbacks(void)
{
	struct imap_parser *p = imap_parser_new(NULL, NULL);
	const char *t = "* 1 FETCH (BODY[] {3}\r\nabc)\r\n* 2 EXISTS\r\n";

	CHECK(p != NULL);
	CHECK_INT(imap_parser_feed(p, t, strlen(t)), 0);
	CHECK_INT(imap_parser_feed(p, ")\r\n", 3), IMAP_ERR_SYNTAX);
	imap_parser_free(p);
	imap_parser_free(NULL);
}

/* Inputs that would be quadratic with a naive rescan. */
static void
test_adversarial(void)
{
	struct imap_limits lim;
	struct sb b = { 0 };
	char *s;
	int i;

	imap_limits_default(&lim);
	sb_add(&b, "* X a", 5);
	for (i = 0; i < 300000; i++)
		sb_add(&b, "[", 1);
	sb_add(&b, " b\r\n", 4);
	s = run_pieces(b.p, b.len, 1000, POLICY_BODIES, &lim);
	CHECK(strstr(s, "EOF rc=0 pending=0 errors=0") != NULL);
	free(s);
	/* many tokens fed one byte at a time */
	b.len = 0;
	sb_add(&b, "* SEARCH", 8);
	for (i = 0; i < 150000; i++)
		sb_add(&b, " 1", 2);
	sb_add(&b, "\r\n", 2);
	s = run_pieces(b.p, b.len, 1, POLICY_BODIES, &lim);
	CHECK(strstr(s, "EOF rc=0 pending=0 errors=0") != NULL);
	free(s);
	free(b.p);
}

int
main(void)
{
	RUN(test_fixtures);
	RUN(test_fixtures_policies);
	RUN(test_examine_values);
	RUN(test_fetch_values);
	RUN(test_misc_values);
	RUN(test_literal_uid);
	RUN(test_edges);
	RUN(test_lookups);
	RUN(test_numbers);
	RUN(test_malformed);
	RUN(test_limits);
	RUN(test_streaming_unbuffered);
	RUN(test_pause);
	RUN(test_abort);
	RUN(test_no_callbacks);
	RUN(test_adversarial);
	DONE();
}
