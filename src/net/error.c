#include "net/error.h"

#include <stdarg.h>
#include <stdio.h>

void
net_error_set(struct net_error *e, const char *kind, const char *fmt, ...)
{
	va_list ap;

	snprintf(e->kind, sizeof(e->kind), "%s", kind);
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}
