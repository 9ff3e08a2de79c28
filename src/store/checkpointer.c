#include "store/checkpointer.h"

#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "thread_name.h"

struct checkpointer {
	pthread_t thread;
	pthread_mutex_t mu;		/* guards what follows */
	pthread_cond_t cv;
	int wanted;			/* the WAL crossed the threshold since the last run */
	int stopping;
	int failing;			/* the last run failed: said once, until one succeeds */
	uint64_t runs;
	int pages;
	sqlite3 *watched;		/* the loop's connection */
	sqlite3 *own;			/* the thread's */
};

/* Runs on the watched connection's thread after each of its commits, the
 * write lock released: no SQLite call here, a flag and a signal. */
static int
wal_grew(void *ud, sqlite3 *db, const char *name, int pages)
{
	struct checkpointer *c = ud;

	(void)db;
	(void)name;
	if (pages >= c->pages) {
		pthread_mutex_lock(&c->mu);
		c->wanted = 1;
		pthread_cond_signal(&c->cv);
		pthread_mutex_unlock(&c->mu);
	}
	return SQLITE_OK;
}

static void *
checkpoint_main(void *arg)
{
	struct checkpointer *c = arg;

	thread_name("ev-checkpoint");
	pthread_mutex_lock(&c->mu);
	for (;;) {
		int log = 0, done = 0, rc;
		while (!c->wanted && !c->stopping)
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->stopping)
			break;	/* closing the last connection checkpoints */
		c->wanted = 0;
		pthread_mutex_unlock(&c->mu);
		/* Passive: copies what no reader still needs, waits for no one.
		 * BUSY is another connection's checkpoint (the indexer's):
		 * the next commit asks again. */
		rc = sqlite3_wal_checkpoint_v2(c->own, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY && !c->failing) {
			/* once: a full disk would otherwise say it at every commit */
			log_warn(NULL, "cannot checkpoint archive.db's WAL, which grows until it can "
			    "(tried again after each commit): %s", sqlite3_errmsg(c->own));
			c->failing = 1;
		} else if (rc == SQLITE_OK && c->failing) {
			log_info(NULL, "archive.db's WAL is checkpointed again");
			c->failing = 0;
		}
		pthread_mutex_lock(&c->mu);
		c->runs++;
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static int
in_wal_mode(sqlite3 *db)
{
	sqlite3_stmt *st;
	int wal = 0;

	if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) != SQLITE_OK)
		return 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		const char *mode = (const char *)sqlite3_column_text(st, 0);
		wal = mode != NULL && sqlite3_stricmp(mode, "wal") == 0;
	}
	sqlite3_finalize(st);
	return wal;
}

struct checkpointer *
checkpointer_start(sqlite3 *db, const char *path, int pages)
{
	struct checkpointer *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->pages = pages;
	c->watched = db;
	if (sqlite3_open_v2(path, &c->own, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
	    NULL) != SQLITE_OK) {
		sqlite3_close(c->own);
		free(c);
		return NULL;
	}
	/* A connection that has read nothing yet does not know the file is in
	 * WAL mode, and its checkpoints do nothing (log -1). */
	if (!in_wal_mode(c->own)) {
		sqlite3_close(c->own);
		free(c);
		return NULL;
	}
	sqlite3_wal_autocheckpoint(c->own, 0);	/* it never commits; be sure */
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	if (pthread_create(&c->thread, NULL, checkpoint_main, c) != 0) {
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->cv);
		sqlite3_close(c->own);
		free(c);
		return NULL;
	}
	sqlite3_wal_hook(db, wal_grew, c);	/* replaces the automatic checkpoint */
	return c;
}

uint64_t
checkpointer_runs(struct checkpointer *c)
{
	uint64_t n;

	pthread_mutex_lock(&c->mu);
	n = c->runs;
	pthread_mutex_unlock(&c->mu);
	return n;
}

void
checkpointer_stop(struct checkpointer *c)
{
	if (c == NULL)
		return;
	sqlite3_wal_autocheckpoint(c->watched, 1000);	/* SQLite's default hook again */
	pthread_mutex_lock(&c->mu);
	c->stopping = 1;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	sqlite3_close(c->own);
	free(c);
}
