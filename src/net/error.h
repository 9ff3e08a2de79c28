#ifndef EMAILVAULT_NET_ERROR_H
#define EMAILVAULT_NET_ERROR_H
/*
 * A failure as users see it: one of the error kinds of DESIGN.md (dns,
 * refused, timeout, tls, certificate, auth, protocol, ...) and a message
 * that names host:port and says what to do.
 */
struct net_error {
	char kind[16];
	char message[1024];
};

void net_error_set(struct net_error *e, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
