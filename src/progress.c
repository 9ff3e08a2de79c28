#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BAR_WIDTH 30

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
progress_begin(struct progress *p, const char *what, uint64_t total)
{
	const char *term = getenv("TERM");

	memset(p, 0, sizeof(*p));
	p->what = what;
	p->total = total;
	p->on = isatty(2) && term && *term && strcmp(term, "dumb") != 0;
}

void
progress_update(struct progress *p, uint64_t done)
{
	char bar[BAR_WIDTH + 1];
	double t;

	if (!p->on)
		return;
	t = now();
	if (t - p->last_draw < 0.1 && !(p->total && done >= p->total))
		return;
	p->last_draw = t;
	if (p->total) {
		int fill = (int)((done > p->total ? p->total : done) * BAR_WIDTH / p->total);
		memset(bar, '#', (size_t)fill);
		memset(bar + fill, '.', (size_t)(BAR_WIDTH - fill));
		bar[BAR_WIDTH] = '\0';
		fprintf(stderr, "\r%s [%s] %3d%% %llu/%llu", p->what, bar,
		    (int)(done * 100 / p->total), (unsigned long long)done,
		    (unsigned long long)p->total);
	} else {
		fprintf(stderr, "\r%s %llu", p->what, (unsigned long long)done);
	}
	fflush(stderr);
}

void
progress_end(struct progress *p)
{
	if (!p->on)
		return;
	fprintf(stderr, "\r\033[K");
	fflush(stderr);
}
