#define _GNU_SOURCE	/* pipe2 */
#include "store/remote.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "log.h"
#include "thread_name.h"

struct job {
	int fd;				/* -1: a delete */
	uint64_t off, len;
	char key[512];
	int if_none_match;
	remote_done_fn done;
	void *ud;
	struct s3_error err;
	int failed;
	struct job *next;
};

struct remote {
	struct remote_config cfg;	/* strings owned: see copy_config */
	char *strings[8];
	char engine_id[33];
	char hostport[300];
	struct s3_client *client;	/* the uploader thread's */
	struct event_base *base;
	/* the uploader */
	pthread_t thread;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *todo, *todo_tail, *finished;
	int stop, busy;
	int pipe[2];
	struct event *wake;
};

static struct remote *current;

void
remote_set_current(struct remote *r)
{
	current = r;
}

struct remote *
remote_current(void)
{
	return current;
}

const char *
remote_engine_id(const struct remote *r)
{
	return r->engine_id;
}

const char *
remote_hostport(const struct remote *r)
{
	return r->hostport;
}

struct s3_client *
remote_client(struct remote *r)
{
	return r->started ? NULL : r->client;
}

const struct remote_config *
remote_config(const struct remote *r)
{
	return &r->cfg;
}

void
remote_part_key(const struct remote *r, int64_t seg, uint64_t offset, int64_t run, char *buf,
    size_t len)
{
	snprintf(buf, len, "%s/seg/%08lld/%012llx-%lld", r->engine_id, (long long)seg,
	    (unsigned long long)offset, (long long)run);
}

void
remote_segment_key(const struct remote *r, int64_t seg, char *buf, size_t len)
{
	snprintf(buf, len, "%s/seg/%08lld.seg", r->engine_id, (long long)seg);
}

static void
err_set(struct s3_error *err, const char *fmt, const char *arg)
{
	snprintf(err->kind, sizeof(err->kind), "storage");
	err->status = 0;
	err->code[0] = '\0';
	snprintf(err->message, sizeof(err->message), fmt, arg);
}

/* ---- the uploader thread ------------------------------------------------ */

static void *
uploader(void *ud)
{
	struct remote *r = ud;

	thread_name("ev-upload");
	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (r->todo == NULL && !r->stop)
			pthread_cond_wait(&r->cv, &r->mu);
		if (r->todo == NULL && r->stop)
			break;
		struct job *j = r->todo;
		r->todo = j->next;
		if (r->todo == NULL)
			r->todo_tail = NULL;
		pthread_mutex_unlock(&r->mu);

		int rc;
		/* No fdatasync here: the bytes are durable already (the commit
		 * group's sync, or the seal's), and a second sync on this file
		 * could take the writeback error that the group's own sync must
		 * see to cut the tail off (store/pack.c, cut_unsynced). */
		if (j->fd < 0) {
			rc = s3_delete(r->client, j->key, &j->err);
		} else {
			rc = s3_put_fd(r->client, j->key, j->fd, j->off, j->len,
			    j->if_none_match ? S3_IF_NONE_MATCH : 0, &j->err);
			if (rc == 1) {
				/* our names are unique: one that exists is not ours */
				snprintf(j->err.kind, sizeof(j->err.kind), "storage");
				snprintf(j->err.message, sizeof(j->err.message), "S3 at %.200s: object %.200s exists "
				    "already; another engine with this engine's id writes to the bucket",
				    r->hostport, j->key);
				rc = -1;
			}
		}
		j->failed = rc != 0;

		pthread_mutex_lock(&r->mu);
		j->next = r->finished;
		r->finished = j;
		ssize_t w;
		do
			w = write(r->pipe[1], "x", 1);
		while (w < 0 && errno == EINTR);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* On the loop: the finished jobs' callbacks, oldest first. */
static void
on_wake(evutil_socket_t fd, short what, void *ud)
{
	struct remote *r = ud;
	struct job *list, *rev = NULL;
	char buf[64];

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&r->mu);
	list = r->finished;
	r->finished = NULL;
	pthread_mutex_unlock(&r->mu);
	while (list) {
		struct job *n = list->next;
		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev) {
		struct job *j = rev;
		rev = j->next;
		r->busy--;
		if (j->fd >= 0)
			close(j->fd);
		if (j->done)
			j->done(j->ud, j->failed ? &j->err : NULL);
		else if (j->failed)
			log_warn(NULL, "S3: cannot delete %s (the next sweep tries again): %s", j->key,
			    j->err.message);
		free(j);
	}
}

static int
enqueue(struct remote *r, struct job *j)
{
	if (r->base == NULL || !r->started) {
		if (j->fd >= 0)
			close(j->fd);
		free(j);
		errno = EINVAL;
		return -1;
	}
	pthread_mutex_lock(&r->mu);
	if (r->todo_tail)
		r->todo_tail->next = j;
	else
		r->todo = j;
	r->todo_tail = j;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	r->busy++;
	return 0;
}

int
remote_upload(struct remote *r, int fd, uint64_t off, uint64_t len, const char *key,
    int if_none_match, remote_done_fn done, void *ud)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return -1;
	if ((j->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		free(j);
		return -1;
	}
	j->off = off;
	j->len = len;
	snprintf(j->key, sizeof(j->key), "%s", key);
	j->if_none_match = if_none_match;
	j->done = done;
	j->ud = ud;
	return enqueue(r, j);
}

int
remote_delete_later(struct remote *r, const char *key)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return -1;
	j->fd = -1;
	snprintf(j->key, sizeof(j->key), "%s", key);
	return enqueue(r, j);
}

int
remote_busy(const struct remote *r)
{
	return r->busy;
}

/* ---- open and close ------------------------------------------------------ */

static const char *
keep(struct remote *r, int i, const char *s)
{
	if (s == NULL)
		return NULL;
	r->strings[i] = strdup(s);
	return r->strings[i];
}

/* The engine id: made once, kept in archive.db. */
static int
engine_id(struct remote *r, sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	int rc = -1;

	if (sqlite3_prepare_v2(db, "SELECT value FROM storage_info WHERE key = 'engine_id'", -1, &st,
	    NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW) {
		snprintf(r->engine_id, sizeof(r->engine_id), "%s", sqlite3_column_text(st, 0));
		rc = 0;
	}
	sqlite3_finalize(st);
	if (rc == 0)
		return 0;
	unsigned char raw[8];
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	for (int i = 0; i < 8; i++)
		snprintf(r->engine_id + 2 * i, 3, "%02x", raw[i]);
	if (sqlite3_prepare_v2(db, "INSERT INTO storage_info(key, value) VALUES ('engine_id', ?1)", -1,
	    &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, r->engine_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	sqlite3_finalize(st);
	return rc;
}

struct remote *
remote_open(const struct remote_config *cfg, sqlite3 *db, struct event_base *base,
    struct s3_error *err)
{
	struct remote *r = calloc(1, sizeof(*r));

	memset(err, 0, sizeof(*err));
	if (r == NULL) {
		err_set(err, "%s", "out of memory");
		return NULL;
	}
	r->pipe[0] = r->pipe[1] = -1;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->cfg = *cfg;
	r->cfg.s3.endpoint = keep(r, 0, cfg->s3.endpoint);
	r->cfg.s3.region = keep(r, 1, cfg->s3.region);
	r->cfg.s3.bucket = keep(r, 2, cfg->s3.bucket);
	r->cfg.s3.prefix = keep(r, 3, cfg->s3.prefix);
	r->cfg.s3.access_key = keep(r, 4, cfg->s3.access_key);
	r->cfg.s3.secret_key = keep(r, 5, cfg->s3.secret_key);
	r->cfg.s3.ca_file = keep(r, 6, cfg->s3.ca_file);
	if (r->cfg.cache_bytes < 0)
		r->cfg.cache_bytes = (int64_t)1 << 30;
	if ((r->client = s3_client_new(&r->cfg.s3, err)) == NULL) {
		remote_close(r);
		return NULL;
	}
	snprintf(r->hostport, sizeof(r->hostport), "%s", s3_client_hostport(r->client));
	if (engine_id(r, db) < 0) {
		err_set(err, "archive.db: cannot keep the engine id: %s", sqlite3_errmsg(db));
		remote_close(r);
		return NULL;
	}
	/* the check at start: bounded (two retries, 20 s each), so an
	 * unreachable server stops the engine in under a minute */
	{
		struct s3_config quick = r->cfg.s3;
		struct s3_client *c;
		int rc;
		quick.max_retries = 2;
		quick.timeout = 20;
		if ((c = s3_client_new(&quick, err)) == NULL) {
			remote_close(r);
			return NULL;
		}
		rc = s3_check(c, err);
		s3_client_free(c);
		if (rc < 0) {
			remote_close(r);
			return NULL;
		}
	}
	if (base) {
		if (pipe2(r->pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
		    (r->wake = event_new(base, r->pipe[0], EV_READ | EV_PERSIST, on_wake, r)) == NULL ||
		    event_add(r->wake, NULL) < 0) {
			err_set(err, "cannot start the S3 uploader: %s", strerror(errno));
			remote_close(r);
			return NULL;
		}
		r->base = base;
		if (pthread_create(&r->thread, NULL, uploader, r) != 0) {
			err_set(err, "%s", "cannot start the S3 uploader thread");
			remote_close(r);
			return NULL;
		}
		r->started = 1;
	}
	return r;
}

void
remote_drain(struct remote *r, double seconds)
{
	struct timespec t0, now;

	if (r == NULL || !r->started)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (r->busy > 0) {
		struct pollfd p = { r->pipe[0], POLLIN, 0 };
		clock_gettime(CLOCK_MONOTONIC, &now);
		double left = seconds - ((double)(now.tv_sec - t0.tv_sec) +
		    (double)(now.tv_nsec - t0.tv_nsec) / 1e9);
		if (left <= 0) {
			log_warn(NULL, "S3: %d uploads unfinished at exit (finished at the next start)",
			    r->busy);
			return;
		}
		if (poll(&p, 1, (int)(left * 1000) + 1) > 0)
			on_wake(r->pipe[0], EV_READ, r);
	}
}

void
remote_close(struct remote *r)
{
	if (r == NULL)
		return;
	if (current == r)
		current = NULL;
	if (r->started) {
		pthread_mutex_lock(&r->mu);
		r->stop = 1;
		pthread_cond_signal(&r->cv);
		pthread_mutex_unlock(&r->mu);
		pthread_join(r->thread, NULL);
		/* finished jobs are dropped: their owners are gone with the loop */
		for (struct job *j = r->finished, *n; j; j = n) {
			n = j->next;
			if (j->fd >= 0)
				close(j->fd);
			free(j);
		}
	}
	if (r->wake)
		event_free(r->wake);
	if (r->pipe[0] >= 0)
		close(r->pipe[0]);
	if (r->pipe[1] >= 0)
		close(r->pipe[1]);
	s3_client_free(r->client);
	for (int i = 0; i < 8; i++)
		if (r->strings[i]) {
			OPENSSL_cleanse(r->strings[i], strlen(r->strings[i]));
			free(r->strings[i]);
		}
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
}

/* ---- reading -------------------------------------------------------------- */

int
remote_fetch_segment(struct remote *r, sqlite3 *db, int64_t seg, const char *path,
    struct s3_error *err)
{
	struct s3_client *c = s3_client_new(&r->cfg.s3, err);
	sqlite3_stmt *st = NULL;
	char tmp[4200], key[512];
	int fd = -1, rc = -1, sealed = 0;

	if (c == NULL)
		return -1;
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)pthread_self() % 100000);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		err_set(err, "cannot create the cache file: %s", strerror(errno));
		goto out;
	}
	if (sqlite3_prepare_v2(db, "SELECT object FROM segments WHERE id = ?1", -1, &st, NULL) !=
	    SQLITE_OK)
		goto dberr;
	sqlite3_bind_int64(st, 1, seg);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
		snprintf(key, sizeof(key), "%s", sqlite3_column_text(st, 0));
		sealed = 1;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sealed) {
		int got = s3_get_fd(c, key, fd, NULL, err);
		if (got != 0) {
			if (got == 1)
				err_set(err, "S3 has no object %s", key);
			goto out;
		}
	} else {
		uint64_t expect = 0;
		if (sqlite3_prepare_v2(db, "SELECT offset, length, key FROM segment_parts "
		    "WHERE segment = ?1 ORDER BY offset", -1, &st, NULL) != SQLITE_OK)
			goto dberr;
		sqlite3_bind_int64(st, 1, seg);
		while (sqlite3_step(st) == SQLITE_ROW) {
			uint64_t off = (uint64_t)sqlite3_column_int64(st, 0), got = 0;
			snprintf(key, sizeof(key), "%s", sqlite3_column_text(st, 2));
			if (off != expect) {
				err_set(err, "the parts of segment %s named in archive.db leave a gap", key);
				goto out;
			}
			int g = s3_get_fd(c, key, fd, &got, err);
			if (g != 0) {
				if (g == 1)
					err_set(err, "S3 has no object %s", key);
				goto out;
			}
			expect += got;
		}
		sqlite3_finalize(st);
		st = NULL;
		if (expect == 0) {
			err_set(err, "%s", "archive.db names no object of this segment");
			goto out;
		}
	}
	if (fdatasync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		err_set(err, "cannot write the cache file: %s", strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		err_set(err, "cannot place the cache file: %s", strerror(errno));
		goto out;
	}
	rc = 0;
	goto out;
dberr:
	err_set(err, "archive.db: %s", sqlite3_errmsg(db));
out:
	sqlite3_finalize(st);
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	s3_client_free(c);
	return rc;
}

/* ---- checking and sweeping ------------------------------------------------- */

struct sizes {
	char **keys;
	uint64_t *size;
	size_t n, cap;
};

static int
collect(const struct s3_object *o, void *ud)
{
	struct sizes *s = ud;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		char **k = realloc(s->keys, cap * sizeof(*k));
		if (k == NULL)
			return -1;
		s->keys = k;
		uint64_t *z = realloc(s->size, cap * sizeof(*z));
		if (z == NULL)
			return -1;
		s->size = z;
		s->cap = cap;
	}
	if ((s->keys[s->n] = strdup(o->key)) == NULL)
		return -1;
	s->size[s->n++] = o->size;
	return 0;
}

static void
sizes_free(struct sizes *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->keys[i]);
	free(s->keys);
	free(s->size);
}

static long
find(const struct sizes *s, const char *key)
{
	size_t lo = 0, hi = s->n;	/* listings come sorted by key */

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(s->keys[mid], key);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* This engine's objects, listed once, on a client of the caller's (the
 * uploader's belongs to its thread). */
static struct s3_client *
list_own(struct remote *r, struct sizes *s, struct s3_error *err)
{
	struct s3_client *c = s3_client_new(&r->cfg.s3, err);
	char prefix[64];

	snprintf(prefix, sizeof(prefix), "%s/", r->engine_id);
	if (c && s3_list(c, prefix, 0, collect, s, err) != 0) {
		s3_client_free(c);
		return NULL;
	}
	return c;
}

long
remote_verify(struct remote *r, sqlite3 *db, remote_problem_fn fn, void *ud, struct s3_error *err)
{
	struct sizes s = { 0 };
	sqlite3_stmt *st = NULL;
	long checked = 0;
	struct s3_client *c = list_own(r, &s, err);

	if (c == NULL) {
		sizes_free(&s);
		return -1;
	}
	s3_client_free(c);
	if (sqlite3_prepare_v2(db, "SELECT key, length FROM segment_parts UNION ALL "
	    "SELECT object, committed FROM segments WHERE object IS NOT NULL", -1, &st, NULL) != SQLITE_OK) {
		err_set(err, "archive.db: %s", sqlite3_errmsg(db));
		sizes_free(&s);
		return -1;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *key = (const char *)sqlite3_column_text(st, 0);
		uint64_t want = (uint64_t)sqlite3_column_int64(st, 1);
		long i = find(&s, key);
		checked++;
		if (i < 0)
			fn(ud, key, "missing");
		else if (sqlite3_column_type(st, 1) != SQLITE_NULL && s.size[i] != want)
			fn(ud, key, "size differs from archive.db");
	}
	sqlite3_finalize(st);
	sizes_free(&s);
	return checked;
}

long
remote_sweep(struct remote *r, sqlite3 *db, int64_t run, struct s3_error *err)
{
	struct sizes s = { 0 };
	sqlite3_stmt *st = NULL;
	long deleted = 0;
	struct s3_client *c = list_own(r, &s, err);

	if (c == NULL) {
		sizes_free(&s);
		return -1;
	}
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM segment_parts WHERE key = ?1", -1, &st, NULL) !=
	    SQLITE_OK) {
		err_set(err, "archive.db: %s", sqlite3_errmsg(db));
		sizes_free(&s);
		s3_client_free(c);
		return -1;
	}
	for (size_t i = 0; i < s.n; i++) {
		const char *dash = strrchr(s.keys[i], '-');
		/* parts only (.../<offset>-<run>); sealed objects are rewritten,
		 * never orphaned for long */
		if (dash == NULL || strstr(s.keys[i], ".seg") || strtoll(dash + 1, NULL, 10) >= run)
			continue;
		sqlite3_bind_text(st, 1, s.keys[i], -1, SQLITE_STATIC);
		int known = sqlite3_step(st) == SQLITE_ROW;
		sqlite3_reset(st);
		if (known)
			continue;
		if (s3_delete(c, s.keys[i], err) < 0) {
			deleted = -1;
			break;
		}
		log_info(NULL, "S3 object no record names removed key=%s size=%llu", s.keys[i],
		    (unsigned long long)s.size[i]);
		deleted++;
	}
	sqlite3_finalize(st);
	sizes_free(&s);
	s3_client_free(c);
	return deleted;
}
