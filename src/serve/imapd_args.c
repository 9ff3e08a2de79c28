/*
 * Reading the arguments of FETCH, SEARCH and sequence sets (imapd_args.h).
 */
#include "serve/imapd_args.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int
number(const char **pp, const char *end, uint32_t *out)
{
	const char *p = *pp;
	uint64_t v = 0;

	if (p >= end || !isdigit((unsigned char)*p))
		return -1;
	while (p < end && isdigit((unsigned char)*p)) {
		v = v * 10 + (uint64_t)(*p++ - '0');
		if (v > UINT32_MAX)
			return -1;
	}
	*pp = p;
	*out = (uint32_t)v;
	return 0;
}

static int
seq_number(const char **pp, const char *end, uint32_t *out)
{
	if (*pp < end && **pp == '*') {
		(*pp)++;
		*out = 0;
		return 0;
	}
	if (number(pp, end, out) < 0 || *out == 0)
		return -1;
	return 0;
}

int
imapd_seqset_parse(const char *s, size_t len, struct imapd_seqset *out)
{
	const char *p = s, *end = s + len;

	out->n = 0;
	for (;;) {
		uint32_t lo, hi;
		if (out->n >= IMAPD_SEQ_MAX || seq_number(&p, end, &lo) < 0)
			return -1;
		hi = lo;
		if (p < end && *p == ':') {
			p++;
			if (seq_number(&p, end, &hi) < 0)
				return -1;
		}
		out->r[out->n].lo = lo;
		out->r[out->n].hi = hi;
		out->n++;
		if (p == end)
			return 0;
		if (*p++ != ',')
			return -1;
	}
}

int
imapd_seqset_has(const struct imapd_seqset *set, uint32_t v, uint32_t max)
{
	for (int i = 0; i < set->n; i++) {
		uint32_t lo = set->r[i].lo ? set->r[i].lo : max;
		uint32_t hi = set->r[i].hi ? set->r[i].hi : max;
		if (lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (v >= lo && v <= hi)
			return 1;
	}
	return 0;
}

/* ---- FETCH ---------------------------------------------------------------- */

static int
ferr(char *err, size_t errlen, const char *what, const char *item)
{
	snprintf(err, errlen, "%s: %.60s", what, item);
	return -1;
}

/* "1.2.HEADER.FIELDS (A B)" inside the brackets, from S to END. */
static int
parse_section(struct imapd_fetch_item *it, const char *s, const char *end, char *err,
    size_t errlen, const char *item)
{
	const char *p = s;

	it->text = SECTION_ALL;
	while (p < end && isdigit((unsigned char)*p)) {
		uint32_t v;
		if (it->nparts >= IMAPD_PART_DEPTH || number(&p, end, &v) < 0 || v == 0)
			return ferr(err, errlen, "bad section part", item);
		it->part[it->nparts++] = v;
		if (p < end && *p == '.')
			p++;
		else
			break;
	}
	if (p == end)
		return 0;
	size_t rest = (size_t)(end - p);
	if (rest == 6 && strncasecmp(p, "HEADER", 6) == 0)
		it->text = SECTION_HEADER;
	else if (rest == 4 && strncasecmp(p, "TEXT", 4) == 0)
		it->text = SECTION_TEXT;
	else if (rest == 4 && strncasecmp(p, "MIME", 4) == 0 && it->nparts > 0)
		it->text = SECTION_MIME;
	else if (rest > 14 && strncasecmp(p, "HEADER.FIELDS ", 14) == 0)
		it->text = SECTION_HEADER_FIELDS, p += 14;
	else if (rest > 18 && strncasecmp(p, "HEADER.FIELDS.NOT ", 18) == 0)
		it->text = SECTION_HEADER_FIELDS_NOT, p += 18;
	else
		return ferr(err, errlen, "unknown section", item);
	if (it->text == SECTION_HEADER_FIELDS || it->text == SECTION_HEADER_FIELDS_NOT) {
		/* (NAME NAME ...): names are atoms (or quoted), copied into
		 * the item's own buffer. */
		size_t used = 0;
		if (p >= end || *p != '(' || end[-1] != ')')
			return ferr(err, errlen, "HEADER.FIELDS needs a list of names", item);
		p++;
		end--;
		while (p < end) {
			while (p < end && *p == ' ')
				p++;
			if (p >= end)
				break;
			const char *q = p;
			int quoted = *p == '"';
			if (quoted) {
				q = memchr(p + 1, '"', (size_t)(end - p - 1));
				if (q == NULL)
					return ferr(err, errlen, "bad header name", item);
				p++;
			} else {
				while (q < end && *q != ' ')
					q++;
			}
			size_t l = (size_t)(q - p);
			if (l == 0 || it->nfields >= IMAPD_FIELDS_MAX || used + l + 1 > sizeof(it->fieldbuf))
				return ferr(err, errlen, "bad or too many header names", item);
			for (const char *r = p; r < q; r++)
				if ((unsigned char)*r <= 0x20 || (unsigned char)*r >= 0x7f || *r == ':')
					return ferr(err, errlen, "bad header name", item);
			memcpy(it->fieldbuf + used, p, l);
			it->fieldbuf[used + l] = '\0';
			it->fields[it->nfields++] = it->fieldbuf + used;
			used += l + 1;
			p = quoted ? q + 1 : q;
		}
		if (it->nfields == 0)
			return ferr(err, errlen, "HEADER.FIELDS needs a name", item);
	}
	return 0;
}

static int
add_simple(struct imapd_fetch *out, enum imapd_fetch_kind k, const char *name)
{
	if (out->n >= IMAPD_FETCH_MAX)
		return -1;
	struct imapd_fetch_item *it = &out->items[out->n++];
	memset(it, 0, sizeof(*it));
	it->kind = k;
	snprintf(it->name, sizeof(it->name), "%s", name);
	return 0;
}

static int
fetch_item(const char *s, size_t len, struct imapd_fetch *out, char *err,
    size_t errlen)
{
	static const struct { const char *name; enum imapd_fetch_kind k; } simple[] = {
		{ "UID", FETCH_UID }, { "FLAGS", FETCH_FLAGS }, { "INTERNALDATE", FETCH_INTERNALDATE },
		{ "RFC822.SIZE", FETCH_SIZE }, { "ENVELOPE", FETCH_ENVELOPE },
		{ "BODYSTRUCTURE", FETCH_BODYSTRUCTURE }, { "BODY", FETCH_BODY },
		{ "RFC822", FETCH_RFC822 }, { "RFC822.HEADER", FETCH_RFC822_HEADER },
		{ "RFC822.TEXT", FETCH_RFC822_TEXT },
	};
	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
		if (strcasecmp(s, simple[i].name) == 0) {
			if (add_simple(out, simple[i].k, simple[i].name) < 0)
				return ferr(err, errlen, "too many items", s);
			return 0;
		}
	if (strcasecmp(s, "ALL") == 0 || strcasecmp(s, "FAST") == 0 || strcasecmp(s, "FULL") == 0) {
		if (add_simple(out, FETCH_FLAGS, "FLAGS") < 0 ||
		    add_simple(out, FETCH_INTERNALDATE, "INTERNALDATE") < 0 ||
		    add_simple(out, FETCH_SIZE, "RFC822.SIZE") < 0 ||
		    (strcasecmp(s, "FAST") != 0 && add_simple(out, FETCH_ENVELOPE, "ENVELOPE") < 0) ||
		    (strcasecmp(s, "FULL") == 0 && add_simple(out, FETCH_BODY, "BODY") < 0))
			return ferr(err, errlen, "too many items", s);
		return 0;
	}
	int peek = 0;
	const char *p;
	if (len > 5 && strncasecmp(s, "BODY[", 5) == 0)
		p = s + 5;
	else if (len > 10 && strncasecmp(s, "BODY.PEEK[", 10) == 0)
		p = s + 10, peek = 1;
	else
		return ferr(err, errlen, "unknown FETCH item", s);
	const char *close = strchr(p, ']');
	if (close == NULL)
		return ferr(err, errlen, "unterminated section", s);
	if (out->n >= IMAPD_FETCH_MAX)
		return ferr(err, errlen, "too many items", s);
	struct imapd_fetch_item *it = &out->items[out->n];
	memset(it, 0, sizeof(*it));
	it->kind = FETCH_SECTION;
	it->peek = peek;
	size_t slen = (size_t)(close - p);
	if (parse_section(it, p, close, err, errlen, s) < 0)
		return -1;
	const char *q = close + 1;
	if (*q == '<') {
		const char *end = s + len;
		q++;
		if (number(&q, end, &it->start) < 0 || q >= end || *q != '.')
			return ferr(err, errlen, "bad partial <start.count>", s);
		q++;
		if (number(&q, end, &it->count) < 0 || q >= end || *q != '>' || it->count == 0)
			return ferr(err, errlen, "bad partial <start.count>", s);
		q++;
		it->partial = 1;
	}
	if (*q != '\0')
		return ferr(err, errlen, "unknown FETCH item", s);
	/* The response names the section as asked, BODY[...] even for PEEK,
	 * and a partial by its start only. */
	int n = snprintf(it->name, sizeof(it->name), "BODY[%.*s]", (int)slen, p);
	if (n < 0 || (size_t)n >= sizeof(it->name))
		return ferr(err, errlen, "section too long", s);
	if (it->partial)
		snprintf(it->name + n, sizeof(it->name) - (size_t)n, "<%u>", it->start);
	for (char *c = it->name; *c && *c != '('; c++)
		*c = (char)toupper((unsigned char)*c);
	out->n++;
	return 0;
}

int
imapd_fetch_parse(const struct imapd_cmd *cmd, const struct imapd_node *n,
    struct imapd_fetch *out, char *err, size_t errlen)
{
	const struct imapd_node *items = n;
	int single = 1;

	out->n = 0;
	if (n == NULL)
		return ferr(err, errlen, "FETCH needs items", "");
	if (n->type == IMAPD_LIST) {
		items = imapd_child(cmd, n);
		single = 0;
		if (items == NULL)
			return ferr(err, errlen, "FETCH needs items", "()");
	}
	for (; items; items = single ? NULL : imapd_next(cmd, items)) {
		if (items->type != IMAPD_ATOM)
			return ferr(err, errlen, "FETCH items are atoms", items->s ? items->s : "(");
		int rc = fetch_item(items->s, items->len, out, err, errlen);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* ---- SEARCH ---------------------------------------------------------------- */

static const char *const months[] = { "jan", "feb", "mar", "apr", "may", "jun", "jul",
	"aug", "sep", "oct", "nov", "dec" };

static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

int64_t
imapd_parse_date(const char *s)
{
	unsigned d = 0, y = 0, m = 0;
	int i = 0;
	char mon[4];

	if (*s == '"')
		s++;
	while (isdigit((unsigned char)s[i]) && i < 2)
		d = d * 10 + (unsigned)(s[i++] - '0');
	if (i == 0 || s[i] != '-')
		return -1;
	s += i + 1;
	for (i = 0; i < 3; i++) {
		if (!isalpha((unsigned char)s[i]))
			return -1;
		mon[i] = (char)tolower((unsigned char)s[i]);
	}
	mon[3] = '\0';
	for (m = 0; m < 12; m++)
		if (strcmp(mon, months[m]) == 0)
			break;
	if (m == 12 || s[3] != '-')
		return -1;
	s += 4;
	for (i = 0; i < 4; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		y = y * 10 + (unsigned)(s[i] - '0');
	}
	if (s[4] != '\0' && s[4] != '"')
		return -1;
	if (d < 1 || d > 31 || y < 1900)
		return -1;
	return days_from_civil(y, m + 1, d);
}

struct sctx {
	const struct imapd_cmd *cmd;
	struct imapd_search *out;
	char *err;
	size_t errlen;
	int depth;
};

static int
serr(struct sctx *c, const char *what, const char *arg)
{
	snprintf(c->err, c->errlen, "%s%s%.60s", what, arg ? ": " : "", arg ? arg : "");
	return -1;
}

static int
new_key(struct sctx *c, enum imapd_search_op op)
{
	if (c->out->n >= IMAPD_SEARCH_MAX)
		return serr(c, "too many search keys", NULL);
	struct imapd_search_key *k = &c->out->keys[c->out->n];
	memset(k, 0, sizeof(*k));
	k->op = op;
	k->a = k->b = k->next = -1;
	return c->out->n++;
}

static int parse_keys(struct sctx *c, const struct imapd_node **np, int until_end);

/* One key from *NP; advances *NP past it. Returns its index or -1. */
static int
parse_key(struct sctx *c, const struct imapd_node **np)
{
	static const struct { const char *name; enum imapd_search_op op; const char *flag; } flags[] = {
		{ "ANSWERED", S_FLAG, "\\Answered" }, { "UNANSWERED", S_UNFLAG, "\\Answered" },
		{ "DELETED", S_FLAG, "\\Deleted" }, { "UNDELETED", S_UNFLAG, "\\Deleted" },
		{ "DRAFT", S_FLAG, "\\Draft" }, { "UNDRAFT", S_UNFLAG, "\\Draft" },
		{ "FLAGGED", S_FLAG, "\\Flagged" }, { "UNFLAGGED", S_UNFLAG, "\\Flagged" },
		{ "SEEN", S_FLAG, "\\Seen" }, { "UNSEEN", S_UNFLAG, "\\Seen" },
	};
	static const struct { const char *name; enum imapd_search_op op; } strs[] = {
		{ "TEXT", S_TEXT }, { "BODY", S_BODY }, { "SUBJECT", S_SUBJECT }, { "FROM", S_FROM },
		{ "TO", S_TO }, { "CC", S_CC }, { "BCC", S_BCC },
		{ "KEYWORD", S_FLAG }, { "UNKEYWORD", S_UNFLAG },
	};
	static const struct { const char *name; enum imapd_search_op op; } dates[] = {
		{ "BEFORE", S_BEFORE }, { "ON", S_ON }, { "SINCE", S_SINCE },
		{ "SENTBEFORE", S_SENTBEFORE }, { "SENTON", S_SENTON }, { "SENTSINCE", S_SENTSINCE },
	};
	const struct imapd_node *n = *np;
	int k;

	if (n == NULL)
		return serr(c, "missing search key", NULL);
	*np = imapd_next(c->cmd, n);
	if (n->type == IMAPD_LIST) {
		const struct imapd_node *inner = imapd_child(c->cmd, n);
		if (inner == NULL)
			return serr(c, "empty search list", NULL);
		if (++c->depth > IMAPD_DEPTH_MAX)
			return serr(c, "search nested too deep", NULL);
		k = parse_keys(c, &inner, 1);
		c->depth--;
		return k;
	}
	if (n->type != IMAPD_ATOM)
		return serr(c, "expected a search key", n->s);
	const char *w = n->s;
	if (strcasecmp(w, "ALL") == 0 || strcasecmp(w, "OLD") == 0)
		return new_key(c, S_ALL);
	if (strcasecmp(w, "NEW") == 0 || strcasecmp(w, "RECENT") == 0)
		return new_key(c, S_NONE);
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (strcasecmp(w, flags[i].name) == 0) {
			if ((k = new_key(c, flags[i].op)) >= 0)
				c->out->keys[k].arg = flags[i].flag;
			return k;
		}
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (strcasecmp(w, strs[i].name) == 0) {
			const struct imapd_node *a = *np;
			if (!imapd_is_astring(a))
				return serr(c, "expected a string after", w);
			*np = imapd_next(c->cmd, a);
			if ((k = new_key(c, strs[i].op)) >= 0)
				c->out->keys[k].arg = a->s;
			return k;
		}
	for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++)
		if (strcasecmp(w, dates[i].name) == 0) {
			const struct imapd_node *a = *np;
			int64_t day;
			if (!imapd_is_astring(a) || (day = imapd_parse_date(a->s)) < 0)
				return serr(c, "expected a date (1-Jan-2024) after", w);
			*np = imapd_next(c->cmd, a);
			if ((k = new_key(c, dates[i].op)) >= 0)
				c->out->keys[k].num = day;
			return k;
		}
	if (strcasecmp(w, "LARGER") == 0 || strcasecmp(w, "SMALLER") == 0) {
		const struct imapd_node *a = *np;
		uint32_t v;
		const char *p = a ? a->s : NULL;
		if (a == NULL || a->type != IMAPD_ATOM || number(&p, a->s + a->len, &v) < 0 ||
		    p != a->s + a->len)
			return serr(c, "expected a number after", w);
		*np = imapd_next(c->cmd, a);
		if ((k = new_key(c, toupper((unsigned char)w[0]) == 'L' ? S_LARGER : S_SMALLER)) >= 0)
			c->out->keys[k].num = v;
		return k;
	}
	if (strcasecmp(w, "HEADER") == 0) {
		const struct imapd_node *f = *np, *a = imapd_next(c->cmd, *np);
		if (!imapd_is_astring(f) || !imapd_is_astring(a))
			return serr(c, "HEADER needs a field name and a string", NULL);
		*np = imapd_next(c->cmd, a);
		if ((k = new_key(c, S_HEADER)) >= 0) {
			c->out->keys[k].field = f->s;
			c->out->keys[k].arg = a->s;
		}
		return k;
	}
	if (strcasecmp(w, "NOT") == 0) {
		int a = parse_key(c, np);
		if (a < 0 || (k = new_key(c, S_NOT)) < 0)
			return -1;
		c->out->keys[k].a = a;
		return k;
	}
	if (strcasecmp(w, "OR") == 0) {
		int a = parse_key(c, np), b;
		if (a < 0 || (b = parse_key(c, np)) < 0 || (k = new_key(c, S_OR)) < 0)
			return -1;
		c->out->keys[k].a = a;
		c->out->keys[k].b = b;
		return k;
	}
	int uid = strcasecmp(w, "UID") == 0;
	const struct imapd_node *sn = uid ? *np : n;
	if (sn == NULL || sn->type != IMAPD_ATOM)
		return serr(c, "unknown search key", w);
	struct imapd_seqset *set = malloc(sizeof(*set));
	if (set == NULL)
		return serr(c, "out of memory", NULL);
	if (imapd_seqset_parse(sn->s, sn->len, set) < 0) {
		free(set);
		return serr(c, uid ? "bad UID set" : "unknown search key", sn->s);
	}
	if (uid)
		*np = imapd_next(c->cmd, sn);
	if ((k = new_key(c, uid ? S_UID : S_SEQ)) < 0) {
		free(set);
		return -1;
	}
	c->out->keys[k].set = set;
	return k;
}

/* Keys from *NP to the end of their list: an S_AND of them. */
static int
parse_keys(struct sctx *c, const struct imapd_node **np, int until_end)
{
	int and = new_key(c, S_AND), prev = -1;

	(void)until_end;
	if (and < 0)
		return -1;
	while (*np) {
		int k = parse_key(c, np);
		if (k < 0)
			return -1;
		if (prev < 0)
			c->out->keys[and].a = k;
		else
			c->out->keys[prev].next = k;
		prev = k;
	}
	if (prev < 0)
		return serr(c, "missing search key", NULL);
	return and;
}

int
imapd_search_parse(const struct imapd_cmd *cmd, int first, struct imapd_search *out,
    char *err, size_t errlen)
{
	struct sctx c = { cmd, out, err, errlen, 0 };
	const struct imapd_node *n = imapd_arg(cmd, first);

	out->n = 0;
	out->root = -1;
	out->charset = NULL;
	if (imapd_atom_is(n, "CHARSET")) {
		const struct imapd_node *cs = imapd_next(cmd, n);
		if (!imapd_is_astring(cs))
			return serr(&c, "CHARSET needs a name", NULL);
		out->charset = cs->s;
		n = imapd_next(cmd, cs);
	}
	if (n == NULL)
		return serr(&c, "SEARCH needs a key", NULL);
	out->root = parse_keys(&c, &n, 1);
	return out->root < 0 ? -1 : 0;
}

void
imapd_search_free(struct imapd_search *s)
{
	for (int i = 0; i < s->n; i++) {
		free(s->keys[i].set);
		s->keys[i].set = NULL;
	}
	s->n = 0;
}
