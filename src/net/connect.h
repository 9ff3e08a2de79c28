#ifndef EMAILVAULT_NET_CONNECT_H
#define EMAILVAULT_NET_CONNECT_H
/*
 * An asynchronous TCP connection: evdns name resolution, then each address
 * in turn, all under one timeout. Hands back a connected, non-blocking
 * socket, or a classified error (dns, refused, timeout).
 */
#include <event2/util.h>

#include "net/error.h"

struct event_base;
struct evdns_base;
struct net_connect;

/* FD >= 0 on success (the callee owns it), else ERR says why. */
typedef void (*net_connect_cb)(evutil_socket_t fd, const struct net_error *err, void *ud);

struct net_connect *net_connect_start(struct event_base *base, const char *host, int port,
    double timeout, net_connect_cb cb, void *ud);
/* Stops an attempt; the callback is not called. */
void net_connect_cancel(struct net_connect *nc);

/* The loop's resolver, created on first use. */
struct evdns_base *net_dns(struct event_base *base);
void net_dns_free(void);

#endif
