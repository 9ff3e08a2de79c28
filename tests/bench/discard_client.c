/*
 * The "server limit" of tests/bench/bench_peers.py: an IMAP client that
 * fetches every message of every folder over implicit TLS and throws the
 * bytes away. Nothing is parsed but the lines around the literals, nothing
 * is written, so what it takes is what the server (and TLS) cost: no
 * archiver can be faster on the same connection.
 *
 *     discard_client HOST PORT USER CA_FILE  (password on stdin, one line)
 *
 * LOGIN, LIST "" "*", then for each folder EXAMINE and UID FETCH 1:*
 * BODY.PEEK[] sent together; prints "messages N bytes N folders N". Not a
 * test. OpenSSL directly, one connection, blocking reads into one buffer.
 */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define BUF_SIZE	(256 * 1024)	/* one read's worth; lines are far shorter */
#define MAX_FOLDERS	4096

struct conn {
	SSL *ssl;
	char buf[BUF_SIZE];
	size_t start, end;		/* unread bytes are buf[start, end) */
	int tag;
};

/* what one command's responses added up to */
struct tally {
	uint64_t messages, bytes;
	char **names;			/* LIST: the folders' names as sent */
	size_t nnames;
};

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("discard_client: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void
send_all(struct conn *c, const char *s, size_t len)
{
	while (len > 0) {
		int n = SSL_write(c->ssl, s, (int)len);

		if (n <= 0)
			die("write failed");
		s += n;
		len -= (size_t)n;
	}
}

/* More bytes after the unread ones (moved to the front first). */
static void
fill(struct conn *c)
{
	int n;

	if (c->start > 0) {
		memmove(c->buf, c->buf + c->start, c->end - c->start);
		c->end -= c->start;
		c->start = 0;
	}
	if (c->end == sizeof(c->buf))
		die("a response line longer than %d bytes", BUF_SIZE);
	n = SSL_read(c->ssl, c->buf + c->end, (int)(sizeof(c->buf) - c->end));
	if (n <= 0)
		die("the server closed the connection");
	c->end += (size_t)n;
}

/* Drops N bytes of a literal, reading them as they come. */
static void
skip(struct conn *c, uint64_t n)
{
	while (n > 0) {
		size_t have = c->end - c->start;

		if (have == 0) {
			c->start = c->end = 0;
			fill(c);
			continue;
		}
		if (have > n)
			have = (size_t)n;
		c->start += have;
		n -= have;
	}
}

/* The next line without its CRLF, NUL terminated in place. */
static char *
line(struct conn *c, size_t *len)
{
	char *nl;

	while ((nl = memchr(c->buf + c->start, '\n', c->end - c->start)) == NULL)
		fill(c);
	char *s = c->buf + c->start;
	*len = (size_t)(nl - s);
	c->start += *len + 1;
	if (*len > 0 && s[*len - 1] == '\r')
		(*len)--;
	s[*len] = '\0';
	return s;
}

/* N of a line ending in {N}, or -1. */
static int64_t
literal_size(const char *s, size_t len)
{
	size_t i;
	int64_t n = 0;

	if (len < 3 || s[len - 1] != '}')
		return -1;
	i = len - 1;
	while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
		i--;
	if (i == 0 || s[i - 1] != '{' || i == len - 1)
		return -1;
	for (; i < len - 1; i++)
		n = n * 10 + (s[i] - '0');
	return n;
}

/* The mailbox of an untagged LIST line as sent (quoted or atom). */
static void
list_name(struct tally *t, const char *s)
{
	const char *p = strrchr(s, ')');
	char *name;

	if (p == NULL || strstr(s, "\\Noselect") || strstr(s, "\\NonExistent") ||
	    (p = strchr(p + 1, ' ')) == NULL)
		return;
	p++;				/* the delimiter: "/" or NIL */
	if (*p == '"')
		p = strchr(p + 1, '"');
	else
		p = strchr(p, ' ');
	if (p == NULL || (p = strchr(p, ' ')) == NULL)
		return;
	if (t->nnames == MAX_FOLDERS)
		die("more than %d folders", MAX_FOLDERS);
	if ((name = strdup(p + 1)) == NULL)
		die("out of memory");
	t->names[t->nnames++] = name;
}

/*
 * Reads responses up to the tagged one of TAG, counting fetched literals;
 * dies unless it is OK.
 */
static void
until_tagged(struct conn *c, int tag, struct tally *t)
{
	char want[16];
	size_t len, wl = (size_t)snprintf(want, sizeof(want), "a%d ", tag);

	for (;;) {
		char *s = line(c, &len);
		int64_t lit = literal_size(s, len);

		if (lit >= 0) {
			/* the only literals asked for are the bodies (names in
			 * LIST come quoted from Dovecot for these folders) */
			if (strncmp(s, "* ", 2) == 0 && strstr(s, " FETCH ")) {
				t->messages++;
				t->bytes += (uint64_t)lit;
			}
			skip(c, (uint64_t)lit);
			continue;
		}
		if (t->names && strncmp(s, "* LIST ", 7) == 0)
			list_name(t, s);
		if (len >= wl && memcmp(s, want, wl) == 0) {
			if (strncmp(s + wl, "OK", 2) != 0)
				die("%s", s);
			return;
		}
	}
}

static int
command(struct conn *c, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int n = snprintf(cmd, sizeof(cmd), "a%d ", ++c->tag);

	va_start(ap, fmt);
	n += vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n + 2 >= (int)sizeof(cmd))
		die("command too long");
	memcpy(cmd + n, "\r\n", 2);
	send_all(c, cmd, (size_t)n + 2);
	return c->tag;
}

static int
tcp_connect(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int fd = -1, rc;

	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
		die("%s: %s", host, gai_strerror(rc));
	for (ai = res; ai; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol)) < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		die("connect %s:%s: %s", host, port, strerror(errno));
	return fd;
}

/* A quoted string for LOGIN (the bench's user and password are ASCII). */
static void
quote(char *out, size_t cap, const char *s)
{
	size_t n = 0;

	out[n++] = '"';
	for (; *s && n + 3 < cap; s++) {
		if (*s == '"' || *s == '\\')
			out[n++] = '\\';
		out[n++] = *s;
	}
	out[n++] = '"';
	out[n] = '\0';
}

/* The certificate must name HOST: its IP address or its DNS name. */
static int
check_name(SSL *ssl, const char *host)
{
	unsigned char addr[16];
	X509_VERIFY_PARAM *p = SSL_get0_param(ssl);

	if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1)
		return X509_VERIFY_PARAM_set1_ip_asc(p, host);
	return X509_VERIFY_PARAM_set1_host(p, host, 0) == 1 && SSL_set_tlsext_host_name(ssl, host) == 1;
}

int
main(int argc, char **argv)
{
	static struct conn c;
	struct tally t = { 0 }, list = { 0 };
	char pass[512], quser[600], qpass[1100];
	SSL_CTX *ctx;
	size_t len, i;
	int fd;

	if (argc != 5)
		die("usage: discard_client HOST PORT USER CA_FILE < password");
	if (fgets(pass, sizeof(pass), stdin) == NULL)
		die("no password on stdin");
	pass[strcspn(pass, "\r\n")] = '\0';

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_load_verify_locations(ctx, argv[4], NULL) != 1)
		die("TLS setup (CA file %s)", argv[4]);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	fd = tcp_connect(argv[1], argv[2]);
	if ((c.ssl = SSL_new(ctx)) == NULL || SSL_set_fd(c.ssl, fd) != 1 ||
	    check_name(c.ssl, argv[1]) != 1 ||
	    SSL_connect(c.ssl) != 1)
		die("TLS handshake with %s:%s", argv[1], argv[2]);

	line(&c, &len);			/* the greeting */
	quote(quser, sizeof(quser), argv[3]);
	quote(qpass, sizeof(qpass), pass);
	until_tagged(&c, command(&c, "LOGIN %s %s", quser, qpass), &t);
	explicit_bzero(pass, sizeof(pass));
	explicit_bzero(qpass, sizeof(qpass));

	if ((list.names = calloc(MAX_FOLDERS, sizeof(*list.names))) == NULL)
		die("out of memory");
	until_tagged(&c, command(&c, "LIST \"\" \"*\""), &list);
	for (i = 0; i < list.nnames; i++) {
		int ex = command(&c, "EXAMINE %s", list.names[i]);
		int fe = command(&c, "UID FETCH 1:* (BODY.PEEK[])");

		until_tagged(&c, ex, &t);
		until_tagged(&c, fe, &t);
		free(list.names[i]);
	}
	free(list.names);
	until_tagged(&c, command(&c, "LOGOUT"), &t);
	printf("messages %llu bytes %llu folders %zu\n", (unsigned long long)t.messages,
	    (unsigned long long)t.bytes, list.nnames);
	SSL_free(c.ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return 0;
}
