#ifndef EMAILVAULT_DEADLINE_H
#define EMAILVAULT_DEADLINE_H
/*
 * A deadline NS nanoseconds from now, for pthread_cond_timedwait: the
 * condition variables here are made with the default attributes, whose
 * clock is CLOCK_REALTIME.
 */
#include <time.h>

static inline struct timespec
deadline_after_ns(long long ns)
{
	struct timespec until;
	long long total;

	clock_gettime(CLOCK_REALTIME, &until);
	total = (long long)until.tv_nsec + (ns > 0 ? ns : 0);
	until.tv_sec += (time_t)(total / 1000000000LL);
	until.tv_nsec = (long)(total % 1000000000LL);
	return until;
}

#endif
