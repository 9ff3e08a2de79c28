#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192
#define LOG_SECRETS_MAX 64
#define LOG_SECRET_MIN 3	/* shorter values would blank out ordinary text */

static enum log_level min_level = LOG_INFO;
static int log_fd = 2;
static char *log_path;
static char *secrets[LOG_SECRETS_MAX];
static int nsecrets;
static int journal;	/* stderr is the journal: no time, a priority */
static log_observer_fn observer;
static void *observer_ud;
/* The indexer thread logs too: the file, its path and the secrets are
 * shared state. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void clear_secrets_locked(void);

static const char *level_names[] = { "DEBUG", "INFO", "WARN", "ERROR" };
/* syslog priorities: debug, info, warning, err */
static const char level_priority[] = { '7', '6', '4', '3' };

int
log_parse_level(const char *name, enum log_level *out)
{
	static const char *lower[] = { "debug", "info", "warn", "error" };

	for (int i = 0; i < 4; i++) {
		if (strcmp(name, lower[i]) == 0 || strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcmp(name, "warning") == 0) {
		*out = LOG_WARN;
		return 0;
	}
	return -1;
}

const char *
log_level_name(enum log_level level)
{
	return level_names[level];
}

void
log_set_level(enum log_level level)
{
	min_level = level;
}

enum log_level
log_get_level(void)
{
	return min_level;
}

int
log_open_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return -1;
	pthread_mutex_lock(&log_mu);
	if (log_fd > 2)
		close(log_fd);
	log_fd = fd;
	if (path != log_path) {
		free(log_path);
		log_path = strdup(path);
	}
	pthread_mutex_unlock(&log_mu);
	return 0;
}

int
log_detect_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char end;

	journal = 0;
	if (js == NULL || log_path != NULL || fstat(2, &st) < 0)
		return 0;
	if (sscanf(js, "%llu:%llu%c", &dev, &ino, &end) != 2)
		return 0;
	/* The variable is inherited by children whose stderr is elsewhere. */
	journal = (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
	return journal;
}

int
log_reopen(void)
{
	if (log_path == NULL)
		return 0;
	return log_open_file(log_path);
}

void
log_close(void)
{
	pthread_mutex_lock(&log_mu);
	if (log_fd > 2)
		close(log_fd);
	log_fd = 2;
	free(log_path);
	log_path = NULL;
	clear_secrets_locked();
	pthread_mutex_unlock(&log_mu);
}

void
log_add_secret(const char *secret)
{
	if (secret == NULL || strlen(secret) < LOG_SECRET_MIN)
		return;
	pthread_mutex_lock(&log_mu);
	for (int i = 0; i < nsecrets; i++) {
		if (strcmp(secrets[i], secret) == 0) {
			pthread_mutex_unlock(&log_mu);
			return;
		}
	}
	if (nsecrets == LOG_SECRETS_MAX) {
		/* The oldest is most likely a password that was since changed. */
		free(secrets[0]);
		memmove(secrets, secrets + 1, sizeof(secrets[0]) * (LOG_SECRETS_MAX - 1));
		nsecrets--;
	}
	secrets[nsecrets++] = strdup(secret);
	pthread_mutex_unlock(&log_mu);
}

static void
clear_secrets_locked(void)
{
	for (int i = 0; i < nsecrets; i++)
		free(secrets[i]);
	nsecrets = 0;
}

void
log_clear_secrets(void)
{
	pthread_mutex_lock(&log_mu);
	clear_secrets_locked();
	pthread_mutex_unlock(&log_mu);
}

void
log_set_observer(log_observer_fn fn, void *ud)
{
	observer = fn;
	observer_ud = ud;
}

const char *
log_quote(char *buf, unsigned size, const char *value)
{
	int plain = value[0] != '\0';
	unsigned o = 0;

	for (const char *p = value; *p && plain; p++)
		if (*p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20)
			plain = 0;
	if (plain) {
		snprintf(buf, size, "%s", value);
		return buf;
	}
	if (size < 3) {
		buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (const char *p = value; *p && o + 3 < size; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			buf[o++] = '\\';
			buf[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
		} else if (c < 0x20) {
			buf[o++] = '?';
		} else {
			buf[o++] = (char)c;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* The first N (NLEN bytes) in H (HLEN bytes), or NULL: text may hold NULs. */
static char *
find_bytes(char *h, size_t hlen, const char *n, size_t nlen)
{
	for (char *p = h; nlen > 0 && (size_t)(h + hlen - p) >= nlen; p++) {
		p = memchr(p, n[0], (size_t)(h + hlen - p) - nlen + 1);
		if (p == NULL)
			return NULL;
		if (memcmp(p, n, nlen) == 0)
			return p;
	}
	return NULL;
}

/* Replaces every occurrence of a registered secret in LINE (*LEN bytes and
 * a NUL) with ***. Secrets are at least 3 bytes: LINE never grows. */
static void
scrub_secrets(char *line, size_t *len)
{
	for (int i = 0; i < nsecrets; i++) {
		size_t slen = strlen(secrets[i]);
		char *from = line, *hit;

		while ((hit = find_bytes(from, *len - (size_t)(from - line), secrets[i], slen)) != NULL) {
			memmove(hit + 3, hit + slen, *len - (size_t)(hit - line) - slen + 1);
			memcpy(hit, "***", 3);
			*len = *len - slen + 3;
			from = hit + 3;
		}
	}
}

char *
log_scrub(const char *s, size_t len, size_t *outlen)
{
	char *buf = malloc(len + 1);

	if (buf == NULL)
		return NULL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	pthread_mutex_lock(&log_mu);
	scrub_secrets(buf, &len);
	pthread_mutex_unlock(&log_mu);
	*outlen = len;
	return buf;
}

void
log_vmsg(enum log_level level, const char *source, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	struct timeval tv;
	struct tm tm;
	size_t len, body, rest;
	char *out;
	int n;

	if (level < min_level)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	len += (size_t)snprintf(line + len, sizeof(line) - len, ".%03dZ ",
	    (int)(tv.tv_usec / 1000));
	body = len;	/* the line after its time: what the journal gets */
	len += (size_t)snprintf(line + len, sizeof(line) - len, "%-5s [%.64s] ",
	    level_names[level], source ? source : "-");
	n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
	if (n < 0)
		n = 0;
	len += (size_t)n;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	/* A message must never break the one-line-per-event rule. */
	for (size_t i = 0; i < len; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[len] = '\0';
	pthread_mutex_lock(&log_mu);
	/* not the time: a secret's digits must not move it */
	rest = len - body;
	scrub_secrets(line + body, &rest);
	len = body + rest;
	if (observer)
		observer(level, line, observer_ud);
	line[len++] = '\n';
	out = line;
	if (journal && log_fd == 2) {
		/* "<6>" written over the end of the time */
		out = line + body - 3;
		out[0] = '<';
		out[1] = level_priority[level];
		out[2] = '>';
	}
	for (size_t off = 0, end = len - (size_t)(out - line); off < end;) {
		ssize_t w = write(log_fd, out + off, end - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)w;
	}
	pthread_mutex_unlock(&log_mu);
}

void
log_msg(enum log_level level, const char *source, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, source, fmt, ap);
	va_end(ap);
}
