/*
 * A message's MIME tree for the IMAP view: where each part's header and
 * body are in the bytes as archived (BODY[1.2], BODY[2.MIME]), and what
 * BODYSTRUCTURE and ENVELOPE say about them. The tree is found here, over
 * the bytes in place, so offsets are exact; GMime 3 parses what is inside
 * the headers (Content-Type and Content-Disposition parameters, address
 * lists) through mime/headers.c and its own parsers. Bounded in depth
 * and in parts, like the indexer's walk (search/extract.c).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <gmime/gmime.h>

#include "mime/headers.h"
#include "search/params.h"
#include "serve/serve.h"

#define MAX_DEPTH	32
#define MAX_PARTS	1000

struct mime_part {
	size_t hdr_off, hdr_len, body_off, body_len;
	char type[130], subtype[130];
	char *ctype, *cte, *id, *desc, *disp, *lang, *md5, *loc;	/* raw values or NULL */
	uint32_t lines;
	struct mime_part *child, *next;	/* a multipart's parts */
	struct mime_part *msg;		/* a message/rfc822's message */
};

size_t
header_end(const char *data, size_t len)
{
	const char *p = data, *end = data + len;

	while (p < end) {
		/* p is at the start of a line */
		if (*p == '\n')
			return (size_t)(p + 1 - data);
		if (*p == '\r' && p + 1 < end && p[1] == '\n')
			return (size_t)(p + 2 - data);
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		if (lf == NULL)
			break;
		p = lf + 1;
	}
	return len;
}

static char *
dup_raw(struct mime_headers *h, const char *name)
{
	const char *v = mime_headers_raw(h, name);

	return v ? strdup(v) : NULL;
}

static void
part_free(struct mime_part *p)
{
	while (p) {
		struct mime_part *next = p->next;
		part_free(p->child);
		part_free(p->msg);
		free(p->ctype);
		free(p->cte);
		free(p->id);
		free(p->desc);
		free(p->disp);
		free(p->lang);
		free(p->md5);
		free(p->loc);
		free(p);
		p = next;
	}
}

void
structure_free(struct mime_part *p)
{
	part_free(p);
}

static uint32_t
count_lines(const char *s, size_t n)
{
	uint32_t c = 0;

	for (const char *p = s, *e = s + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
		c++;
	/* A last line without its line end is a line too. */
	return c + (n > 0 && s[n - 1] != '\n');
}

struct walk {
	const char *data;
	int parts;
};

static struct mime_part *entity(struct walk *w, size_t off, size_t len, int depth, int digest);

/* "--BOUNDARY" at the start of the line at P? 1, 2 for the closing one. */
static int
delimiter(const char *p, const char *end, const char *b, size_t bl)
{
	if ((size_t)(end - p) < bl + 2 || p[0] != '-' || p[1] != '-' || memcmp(p + 2, b, bl) != 0)
		return 0;
	p += 2 + bl;
	if (end - p >= 2 && p[0] == '-' && p[1] == '-')
		return 2;
	return 1;
}

static void
multipart(struct walk *w, struct mime_part *mp, const char *b, int depth)
{
	size_t bl = strlen(b);
	const char *start = w->data + mp->body_off, *end = start + mp->body_len, *p = start;
	const char *part = NULL;
	struct mime_part **tail = &mp->child;

	if (bl == 0 || bl > 256)
		return;
	while (p < end) {
		int d = delimiter(p, end, b, bl);
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		const char *next = lf ? lf + 1 : end;
		if (d) {
			if (part) {
				/* The line end before the delimiter belongs to it. */
				const char *pe = p;
				if (pe > part && pe[-1] == '\n')
					pe--;
				if (pe > part && pe[-1] == '\r')
					pe--;
				struct mime_part *c = entity(w, (size_t)(part - w->data), (size_t)(pe - part),
				    depth + 1, strcasecmp(mp->subtype, "digest") == 0);
				if (c) {
					*tail = c;
					tail = &c->next;
				}
			}
			if (d == 2)
				return;
			part = next;
		}
		p = next;
	}
	if (part && part < end) {
		/* No closing delimiter: the last part runs to the end. */
		struct mime_part *c = entity(w, (size_t)(part - w->data), (size_t)(end - part), depth + 1,
		    strcasecmp(mp->subtype, "digest") == 0);
		if (c)
			*tail = c;
	}
}

static struct mime_part *
entity(struct walk *w, size_t off, size_t len, int depth, int digest)
{
	struct mime_part *p;
	struct mime_headers *h;
	char tok[130];

	if (depth > MAX_DEPTH || ++w->parts > MAX_PARTS || (p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	size_t he = header_end(w->data + off, len);
	p->hdr_off = off;
	p->hdr_len = he;
	p->body_off = off + he;
	p->body_len = len - he;
	if ((h = mime_headers_parse(w->data + off, he)) == NULL) {
		free(p);
		return NULL;
	}
	p->ctype = dup_raw(h, "Content-Type");
	p->cte = dup_raw(h, "Content-Transfer-Encoding");
	p->id = dup_raw(h, "Content-ID");
	p->desc = dup_raw(h, "Content-Description");
	p->disp = dup_raw(h, "Content-Disposition");
	p->lang = dup_raw(h, "Content-Language");
	p->md5 = dup_raw(h, "Content-MD5");
	p->loc = dup_raw(h, "Content-Location");
	mime_headers_free(h);
	param_token(p->ctype ? p->ctype : "", tok, sizeof(tok));
	char *slash = strchr(tok, '/');
	if (!*tok || !slash || !slash[1] || slash == tok) {
		strcpy(tok, digest ? "message/rfc822" : "text/plain");
		slash = strchr(tok, '/');
		free(p->ctype);
		p->ctype = NULL;	/* the defaults' parameters: charset us-ascii */
	}
	*slash = '\0';
	snprintf(p->type, sizeof(p->type), "%s", tok);
	snprintf(p->subtype, sizeof(p->subtype), "%s", slash + 1);
	if (strcmp(p->type, "text") == 0 || strcmp(p->type, "message") == 0)
		p->lines = count_lines(w->data + p->body_off, p->body_len);
	if (strcmp(p->type, "multipart") == 0) {
		char *b = p->ctype ? param_get_raw(p->ctype, "boundary") : NULL;
		if (b)
			multipart(w, p, b, depth);
		g_free(b);
	} else if (strcmp(p->type, "message") == 0 && (strcmp(p->subtype, "rfc822") == 0 ||
	    strcmp(p->subtype, "global") == 0)) {
		p->msg = entity(w, p->body_off, p->body_len, depth + 1, 0);
	}
	return p;
}

struct mime_part *
structure_parse(const char *data, size_t len)
{
	struct walk w = { data, 0 };

	return entity(&w, 0, len, 0, 0);
}

/* ---- sections ------------------------------------------------------------------ */

int
structure_section(const struct mime_part *top, const uint32_t *path, int n, int text,
    size_t *off, size_t *len)
{
	const struct mime_part *cur = top, *part = NULL;

	for (int i = 0; i < n; i++) {
		uint32_t k = path[i];
		if (cur == NULL)
			return -1;
		if (strcmp(cur->type, "multipart") == 0) {
			part = cur->child;
			while (part && --k)
				part = part->next;
		} else if (k == 1) {
			part = cur;	/* a message that is no multipart: its body is part 1 */
		} else {
			return -1;
		}
		if (part == NULL)
			return -1;
		if (i + 1 < n)
			cur = part->msg ? part->msg : part;
	}
	switch (text) {
	case SECTION_ALL:
		*off = part->body_off;
		*len = part->body_len;
		return 0;
	case SECTION_MIME:
		*off = part->hdr_off;
		*len = part->hdr_len;
		return 0;
	default:
		if (part->msg == NULL)
			return -1;	/* HEADER and TEXT of a part that is no message */
		if (text == SECTION_TEXT) {
			*off = part->msg->body_off;
			*len = part->msg->body_len;
		} else {
			*off = part->msg->hdr_off;
			*len = part->msg->hdr_len;
		}
		return 0;
	}
}

/* ---- BODYSTRUCTURE ---------------------------------------------------------------- */

static void
put_upper(struct evbuffer *out, const char *s)
{
	char buf[64];
	size_t i;

	for (i = 0; s[i] && i < sizeof(buf) - 1; i++)
		buf[i] = (char)toupper((unsigned char)s[i]);
	buf[i] = '\0';
	put_string(out, buf, i);
}

static void
put_params(struct evbuffer *out, GMimeParamList *list, int charset_default)
{
	int n = list ? g_mime_param_list_length(list) : 0;

	if (n == 0 && !charset_default) {
		evbuffer_add(out, "NIL", 3);
		return;
	}
	evbuffer_add(out, "(", 1);
	if (n == 0)
		evbuffer_add_printf(out, "\"CHARSET\" \"US-ASCII\"");
	for (int i = 0; i < n; i++) {
		GMimeParam *pm = g_mime_param_list_get_parameter_at(list, i);
		const char *name = g_mime_param_get_name(pm), *value = g_mime_param_get_value(pm);
		if (i)
			evbuffer_add(out, " ", 1);
		put_upper(out, name ? name : "");
		evbuffer_add(out, " ", 1);
		put_string(out, value ? value : "", value ? strlen(value) : 0);
	}
	evbuffer_add(out, ")", 1);
}

static void
put_disposition(struct evbuffer *out, const char *raw)
{
	GMimeContentDisposition *d = raw ? g_mime_content_disposition_parse(NULL, raw) : NULL;
	const char *what = d ? g_mime_content_disposition_get_disposition(d) : NULL;

	if (what == NULL || !*what) {
		evbuffer_add(out, "NIL", 3);
	} else {
		evbuffer_add(out, "(", 1);
		put_upper(out, what);
		evbuffer_add(out, " ", 1);
		put_params(out, g_mime_content_disposition_get_parameters(d), 0);
		evbuffer_add(out, ")", 1);
	}
	if (d)
		g_object_unref(d);
}

static void
put_lang(struct evbuffer *out, const char *raw)
{
	char tok[64];

	param_token(raw ? raw : "", tok, sizeof(tok));
	put_nstring(out, *tok ? tok : NULL);
}

static void
part_write(struct evbuffer *out, const struct mime_part *p, const char *data, int ext)
{
	if (strcmp(p->type, "multipart") == 0) {
		evbuffer_add(out, "(", 1);
		if (p->child == NULL)
			/* A multipart without parts: one empty text part (as
			 * a client must get at least one). */
			evbuffer_add_printf(out, "(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)");
		for (const struct mime_part *c = p->child; c; c = c->next)
			part_write(out, c, data, ext);
		evbuffer_add(out, " ", 1);
		put_upper(out, p->subtype);
		if (ext) {
			GMimeContentType *ct = p->ctype ? g_mime_content_type_parse(NULL, p->ctype) : NULL;
			evbuffer_add(out, " ", 1);
			put_params(out, ct ? g_mime_content_type_get_parameters(ct) : NULL, 0);
			if (ct)
				g_object_unref(ct);
			evbuffer_add(out, " ", 1);
			put_disposition(out, p->disp);
			evbuffer_add(out, " ", 1);
			put_lang(out, p->lang);
			evbuffer_add(out, " ", 1);
			put_nstring(out, p->loc);
		}
		evbuffer_add(out, ")", 1);
		return;
	}
	GMimeContentType *ct = p->ctype ? g_mime_content_type_parse(NULL, p->ctype) : NULL;
	char enc[64];
	param_token(p->cte ? p->cte : "", enc, sizeof(enc));
	evbuffer_add(out, "(", 1);
	put_upper(out, p->type);
	evbuffer_add(out, " ", 1);
	put_upper(out, p->subtype);
	evbuffer_add(out, " ", 1);
	put_params(out, ct ? g_mime_content_type_get_parameters(ct) : NULL,
	    strcmp(p->type, "text") == 0);
	if (ct)
		g_object_unref(ct);
	evbuffer_add(out, " ", 1);
	put_nstring(out, p->id);
	evbuffer_add(out, " ", 1);
	put_nstring(out, p->desc);
	evbuffer_add(out, " ", 1);
	put_upper(out, *enc ? enc : "7bit");
	evbuffer_add_printf(out, " %zu", p->body_len);
	if (p->msg) {
		evbuffer_add(out, " ", 1);
		envelope_write(out, data + p->msg->hdr_off, p->msg->hdr_len);
		evbuffer_add(out, " ", 1);
		part_write(out, p->msg, data, ext);
		evbuffer_add_printf(out, " %u", p->lines);
	} else if (strcmp(p->type, "text") == 0) {
		evbuffer_add_printf(out, " %u", p->lines);
	}
	if (ext) {
		evbuffer_add(out, " ", 1);
		put_nstring(out, p->md5);
		evbuffer_add(out, " ", 1);
		put_disposition(out, p->disp);
		evbuffer_add(out, " ", 1);
		put_lang(out, p->lang);
		evbuffer_add(out, " ", 1);
		put_nstring(out, p->loc);
	}
	evbuffer_add(out, ")", 1);
}

void
structure_write(struct evbuffer *out, const struct mime_part *p, const char *data, int ext)
{
	part_write(out, p, data, ext);
}

/* ---- ENVELOPE -------------------------------------------------------------------- */

static void
put_name(struct evbuffer *out, const char *name)
{
	int ascii = 1;

	if (name == NULL || !*name) {
		evbuffer_add(out, "NIL", 3);
		return;
	}
	for (const char *c = name; *c; c++)
		if ((unsigned char)*c >= 0x80)
			ascii = 0;
	if (ascii) {
		put_string(out, name, strlen(name));
		return;
	}
	/* Back to encoded words, which every client reads. */
	char *enc = g_mime_utils_header_encode_phrase(NULL, name, "utf-8");
	put_string(out, enc ? enc : name, strlen(enc ? enc : name));
	g_free(enc);
}

static void
put_addresses(struct evbuffer *out, InternetAddressList *list, int *any)
{
	int n = list ? internet_address_list_length(list) : 0;

	for (int i = 0; i < n; i++) {
		InternetAddress *a = internet_address_list_get_address(list, i);
		if (INTERNET_ADDRESS_IS_GROUP(a)) {
			/* (NIL NIL "group" NIL) members (NIL NIL NIL NIL) */
			evbuffer_add(out, "(NIL NIL ", 9);
			put_nstring(out, internet_address_get_name(a) ? internet_address_get_name(a) : "");
			evbuffer_add(out, " NIL)", 5);
			put_addresses(out, internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a)), any);
			evbuffer_add(out, "(NIL NIL NIL NIL)", 17);
			*any = 1;
			continue;
		}
		const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a));
		const char *at = addr ? strrchr(addr, '@') : NULL;
		evbuffer_add(out, "(", 1);
		put_name(out, internet_address_get_name(a));
		evbuffer_add(out, " NIL ", 5);
		if (addr == NULL)
			evbuffer_add(out, "NIL NIL", 7);
		else if (at) {
			put_string(out, addr, (size_t)(at - addr));
			evbuffer_add(out, " ", 1);
			put_string(out, at + 1, strlen(at + 1));
		} else {
			put_string(out, addr, strlen(addr));
			evbuffer_add(out, " NIL", 4);
		}
		evbuffer_add(out, ")", 1);
		*any = 1;
	}
}

static void
put_address_field(struct evbuffer *out, const char *raw)
{
	InternetAddressList *list = raw ? internet_address_list_parse(NULL, raw) : NULL;
	struct evbuffer *tmp = evbuffer_new();
	int any = 0;

	put_addresses(tmp, list, &any);
	if (any) {
		evbuffer_add(out, "(", 1);
		evbuffer_add_buffer(out, tmp);
		evbuffer_add(out, ")", 1);
	} else {
		evbuffer_add(out, "NIL", 3);
	}
	evbuffer_free(tmp);
	if (list)
		g_object_unref(list);
}

void
envelope_write(struct evbuffer *out, const char *hdr, size_t len)
{
	struct mime_headers *h = mime_headers_parse(hdr, len);
	const char *from;

	if (h == NULL) {
		evbuffer_add_printf(out, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
		return;
	}
	from = mime_headers_raw(h, "From");
	evbuffer_add(out, "(", 1);
	put_nstring(out, mime_headers_raw(h, "Date"));
	evbuffer_add(out, " ", 1);
	put_nstring(out, mime_headers_raw(h, "Subject"));
	evbuffer_add(out, " ", 1);
	put_address_field(out, from);
	evbuffer_add(out, " ", 1);
	put_address_field(out, mime_headers_raw(h, "Sender") ? mime_headers_raw(h, "Sender") : from);
	evbuffer_add(out, " ", 1);
	put_address_field(out, mime_headers_raw(h, "Reply-To") ? mime_headers_raw(h, "Reply-To") : from);
	evbuffer_add(out, " ", 1);
	put_address_field(out, mime_headers_raw(h, "To"));
	evbuffer_add(out, " ", 1);
	put_address_field(out, mime_headers_raw(h, "Cc"));
	evbuffer_add(out, " ", 1);
	put_address_field(out, mime_headers_raw(h, "Bcc"));
	evbuffer_add(out, " ", 1);
	put_nstring(out, mime_headers_raw(h, "In-Reply-To"));
	evbuffer_add(out, " ", 1);
	put_nstring(out, mime_headers_raw(h, "Message-ID"));
	evbuffer_add(out, ")", 1);
	mime_headers_free(h);
}

/* ---- HEADER.FIELDS ------------------------------------------------------------------ */

void
header_fields(struct evbuffer *out, const char *hdr, size_t len, const char *const *fields,
    int n, int not)
{
	const char *p = hdr, *end = hdr + len;

	while (p < end) {
		/* One field: its line and the continuation lines after it. */
		const char *start = p, *colon = NULL;
		if (*p == '\r' || *p == '\n')
			break;		/* the empty line */
		do {
			const char *lf = memchr(p, '\n', (size_t)(end - p));
			p = lf ? lf + 1 : end;
		} while (p < end && (*p == ' ' || *p == '\t'));
		for (const char *c = start; c < p && *c != '\n'; c++)
			if (*c == ':') {
				colon = c;
				break;
			}
		if (colon == NULL)
			continue;
		size_t nl = (size_t)(colon - start);
		while (nl && (start[nl - 1] == ' ' || start[nl - 1] == '\t'))
			nl--;
		int hit = 0;
		for (int i = 0; i < n && !hit; i++)
			hit = strlen(fields[i]) == nl && strncasecmp(fields[i], start, nl) == 0;
		if (hit != not)
			evbuffer_add(out, start, (size_t)(p - start));
	}
	evbuffer_add(out, "\r\n", 2);
}
