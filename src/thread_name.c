#define _GNU_SOURCE	/* pthread_setname_np */
#include "thread_name.h"

#include <pthread.h>

void
thread_name(const char *name)
{
	(void)pthread_setname_np(pthread_self(), name);
}
