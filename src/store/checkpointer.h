#ifndef EMAILVAULT_STORE_CHECKPOINTER_H
#define EMAILVAULT_STORE_CHECKPOINTER_H
/*
 * archive.db's WAL checkpointed on a thread of its own. SQLite's automatic
 * checkpoint runs in the commit that crosses its threshold: on the event
 * loop, that commit copied a thousand pages into the database file and
 * waited for its fsync while every source and the control socket waited.
 * Here the watched connection's commits only say how long the WAL has
 * grown; a passive checkpoint on the thread's own connection does the
 * copying, beside the loop's later commits (SQLite lets one checkpoint
 * run with writers).
 */
#include <stdint.h>

#include <sqlite3.h>

struct checkpointer;

/* Watches DB (whose file is PATH): from now on its commits no longer
 * checkpoint; one that leaves PAGES pages or more in the WAL wakes the
 * thread. NULL (and DB as it was) when the thread or its connection
 * cannot start. */
struct checkpointer *checkpointer_start(sqlite3 *db, const char *path, int pages);
/* Checkpoints run so far, those another connection's checkpoint kept
 * busy included (for the tests). */
uint64_t checkpointer_runs(struct checkpointer *c);
/* Waits for a checkpoint still running; DB checkpoints by itself again. */
void checkpointer_stop(struct checkpointer *c);

#endif
