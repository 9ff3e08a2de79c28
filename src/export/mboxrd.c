#include "export/mboxrd.h"

#include <string.h>

static const char from_sp[] = "From ";

void
mboxrd_quote_init(struct mboxrd_quoter *q)
{
	memset(q, 0, sizeof(*q));
}

/* N '>'s: a count, since a line may start with any number of them. */
static int
put_gts(size_t n, mboxrd_out out, void *ud)
{
	static const char gts[64] =
	    ">>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>";

	while (n > 0) {
		size_t k = n < sizeof(gts) ? n : sizeof(gts);
		if (out(ud, gts, k) < 0)
			return -1;
		n -= k;
	}
	return 0;
}

/* The line's start turned out not to be ">*From ": give it as it was. */
static int
flush_held(struct mboxrd_quoter *q, mboxrd_out out, void *ud)
{
	if (put_gts(q->gts, out, ud) < 0 || (q->from > 0 && out(ud, from_sp, q->from) < 0))
		return -1;
	q->gts = q->from = 0;
	return 0;
}

int
mboxrd_quote(struct mboxrd_quoter *q, const char *p, size_t n, mboxrd_out out, void *ud)
{
	size_t i = 0;

	while (i < n) {
		if (q->mid_line) {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t k = nl ? (size_t)(nl - (p + i)) + 1 : n - i;
			if (out(ud, p + i, k) < 0)
				return -1;
			i += k;
			q->mid_line = nl == NULL;
			continue;
		}
		if (q->from == 0 && p[i] == '>') {
			q->gts++;
			i++;
		} else if (p[i] == from_sp[q->from]) {
			i++;
			if (++q->from == sizeof(from_sp) - 1) {
				if (put_gts(q->gts + 1, out, ud) < 0 ||
				    out(ud, from_sp, sizeof(from_sp) - 1) < 0)
					return -1;
				q->gts = q->from = 0;
				q->mid_line = 1;
			}
		} else {
			/* this byte, a line end too, is copied as part of the line */
			if (flush_held(q, out, ud) < 0)
				return -1;
			q->mid_line = 1;
		}
	}
	return 0;
}

int
mboxrd_quote_end(struct mboxrd_quoter *q, mboxrd_out out, void *ud)
{
	int rc = flush_held(q, out, ud);

	q->mid_line = 0;
	return rc;
}
