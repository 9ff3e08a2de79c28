#include "net/connect.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#define NET_ADDRESS_TIMEOUT 5	/* seconds per address while others remain */

struct net_connect {
	struct event_base *base;
	char host[256];
	int port;
	net_connect_cb cb;
	void *ud;
	struct evdns_getaddrinfo_request *dns_req;
	struct evutil_addrinfo *addrs, *next_addr;
	struct event *timer;
	struct event *conn_ev;
	struct event *step_ev;		/* continues after resolution, from the loop */
	int dns_result;
	int dns_done;
	evutil_socket_t fd;
	int last_errno;
};

static struct evdns_base *dns_base;
static struct event_base *dns_owner;

struct evdns_base *
net_dns(struct event_base *base)
{
	if (dns_base && dns_owner != base)
		net_dns_free();
	if (dns_base == NULL) {
		dns_base = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
		    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (dns_base == NULL)	/* no resolv.conf: still serve numbers and hosts */
			dns_base = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		dns_owner = base;
	}
	return dns_base;
}

void
net_dns_free(void)
{
	if (dns_base)
		evdns_base_free(dns_base, 0);
	dns_base = NULL;
	dns_owner = NULL;
}

static void
finish(struct net_connect *nc, evutil_socket_t fd, const struct net_error *err)
{
	net_connect_cb cb = nc->cb;
	void *ud = nc->ud;

	nc->cb = NULL;
	if (nc->fd >= 0 && nc->fd != fd)
		evutil_closesocket(nc->fd);
	nc->fd = -1;
	net_connect_cancel(nc);
	cb(fd, err, ud);
}

static void try_next(struct net_connect *nc);

static void
connected_cb(evutil_socket_t fd, short what, void *arg)
{
	struct net_connect *nc = arg;
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	event_free(nc->conn_ev);
	nc->conn_ev = NULL;
	if (what & EV_TIMEOUT)
		soerr = ETIMEDOUT;	/* this address is silent: try the next */
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr == 0) {
		finish(nc, fd, NULL);
		return;
	}
	nc->last_errno = soerr;
	evutil_closesocket(fd);
	nc->fd = -1;
	try_next(nc);
}

static void
fail_connect(struct net_connect *nc)
{
	struct net_error err;
	int e = nc->last_errno;

	if (e == ECONNREFUSED)
		net_error_set(&err, "refused", "connection refused by %s:%d: verify the host and "
		    "port in the source file, that the server allows IMAP (some providers need it "
		    "turned on in their settings) and that no firewall blocks the port",
		    nc->host, nc->port);
	else if (e == ETIMEDOUT)
		net_error_set(&err, "timeout", "connecting to %s:%d timed out: check the host and "
		    "port, and that no firewall drops the connection", nc->host, nc->port);
	else if (e == ECONNRESET || e == EPIPE)
		/* accepted, then dropped before the loop saw it connected: the
		 * same failure as a reset a moment later, not a wrong address */
		net_error_set(&err, "protocol", "the connection to %s:%d failed: %s", nc->host,
		    nc->port, strerror(e));
	else
		net_error_set(&err, "refused", "cannot connect to %s:%d: %s: verify the host and "
		    "port, and that this machine can reach the server", nc->host, nc->port,
		    strerror(e));
	finish(nc, -1, &err);
}

static void
try_next(struct net_connect *nc)
{
	while (nc->next_addr) {
		struct evutil_addrinfo *ai = nc->next_addr;
		evutil_socket_t fd;

		nc->next_addr = ai->ai_next;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			nc->last_errno = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			nc->fd = fd;
			finish(nc, fd, NULL);
			return;
		}
		if (errno != EINPROGRESS) {
			nc->last_errno = errno;
			close(fd);
			continue;
		}
		nc->fd = fd;
		nc->conn_ev = event_new(nc->base, fd, EV_WRITE, connected_cb, nc);
		/* One address that drops packets (often a broken IPv6 route)
		 * must not use up the whole timeout when others are left. */
		if (nc->next_addr) {
			struct timeval per = { NET_ADDRESS_TIMEOUT, 0 };
			event_add(nc->conn_ev, &per);
		} else {
			event_add(nc->conn_ev, NULL);
		}
		return;
	}
	fail_connect(nc);
}

/* May run inside evdns_getaddrinfo (a numeric host): only note the result
 * and continue from the loop, so the caller has its handle first. */
static void
resolved_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct net_connect *nc = arg;

	if (result == EVUTIL_EAI_CANCEL)
		return;
	nc->dns_req = NULL;
	nc->dns_done = 1;
	nc->dns_result = result;
	nc->addrs = res;
	event_active(nc->step_ev, EV_TIMEOUT, 0);
}

static void
step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct net_connect *nc = arg;
	struct evutil_addrinfo *res = nc->addrs;
	int result = nc->dns_result;
	struct net_error err;

	(void)fd;
	(void)what;
	if (result != 0 || res == NULL) {
		net_error_set(&err, "dns", "cannot resolve host %s: %s. Check the host name in the "
		    "source file and that this machine's DNS works", nc->host,
		    evutil_gai_strerror(result));
		finish(nc, -1, &err);
		return;
	}
	nc->next_addr = res;
	nc->last_errno = ECONNREFUSED;
	try_next(nc);
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct net_connect *nc = arg;
	struct net_error err;

	(void)fd;
	(void)what;
	if (nc->dns_req)
		net_error_set(&err, "dns", "resolving %s timed out: check this machine's DNS "
		    "settings", nc->host);
	else
		net_error_set(&err, "timeout", "connecting to %s:%d timed out: check the host and "
		    "port, and that no firewall drops the connection", nc->host, nc->port);
	finish(nc, -1, &err);
}

struct net_connect *
net_connect_start(struct event_base *base, const char *host, int port, double timeout,
    net_connect_cb cb, void *ud)
{
	struct net_connect *nc = calloc(1, sizeof(*nc));
	struct evutil_addrinfo hints;
	struct timeval tv;
	char portstr[16];
	struct evdns_getaddrinfo_request *req;

	if (nc == NULL)
		return NULL;
	nc->base = base;
	nc->fd = -1;
	snprintf(nc->host, sizeof(nc->host), "%s", host);
	nc->port = port;
	nc->cb = cb;
	nc->ud = ud;
	tv.tv_sec = (time_t)timeout;
	tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) * 1e6);
	nc->timer = evtimer_new(base, timeout_cb, nc);
	evtimer_add(nc->timer, &tv);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	snprintf(portstr, sizeof(portstr), "%d", port);
	nc->step_ev = event_new(base, -1, 0, step_cb, nc);
	req = evdns_getaddrinfo(net_dns(base), host, portstr, &hints, resolved_cb, nc);
	if (!nc->dns_done)
		nc->dns_req = req;
	return nc;
}

void
net_connect_cancel(struct net_connect *nc)
{
	if (nc == NULL)
		return;
	if (nc->cb) {
		/* Called by the owner: no callback after this. */
		nc->cb = NULL;
	}
	if (nc->dns_req) {
		struct evdns_getaddrinfo_request *req = nc->dns_req;
		nc->dns_req = NULL;
		evdns_getaddrinfo_cancel(req);	/* runs resolved_cb with CANCEL */
	}
	if (nc->conn_ev)
		event_free(nc->conn_ev);
	if (nc->step_ev)
		event_free(nc->step_ev);
	if (nc->timer)
		event_free(nc->timer);
	if (nc->fd >= 0)
		evutil_closesocket(nc->fd);
	if (nc->addrs)
		evutil_freeaddrinfo(nc->addrs);
	free(nc);
}
