#ifndef EMAILVAULT_PROGRESS_H
#define EMAILVAULT_PROGRESS_H
/*
 * A progress bar on stderr for long commands (export, reindex, verify),
 * drawn only when stderr is a terminal that can take it (TERM set and not
 * "dumb"); otherwise silent, so logs and pipes stay clean.
 */
#include <stdint.h>

struct progress {
	const char *what;	/* "exporting" */
	uint64_t total;		/* 0: unknown */
	int on;
	double last_draw;
};

void progress_begin(struct progress *p, const char *what, uint64_t total);
/* Redraws at most ten times a second. */
void progress_update(struct progress *p, uint64_t done);
/* Clears the bar (the caller then prints its summary line). */
void progress_end(struct progress *p);

#endif
