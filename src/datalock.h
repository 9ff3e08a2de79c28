#ifndef EMAILVAULT_DATALOCK_H
#define EMAILVAULT_DATALOCK_H
#include <stddef.h>
/*
 * DATA/engine.lock: one engine per data folder, and no other command
 * writing to the archive while an engine runs or starts (a starting engine
 * removes blobs/tmp/ leftovers and migrates archive.db). Everyone takes it
 * the same way, flock(LOCK_EX | LOCK_NB), so the kernel drops it when the
 * holder dies. The engine writes its pid into the file (kill -HUP, and the
 * message a second engine prints); short commands (pause, resume, verify
 * --reclaim) leave the content alone, so a pid there that names no live
 * process means one of them holds it.
 */

/* Takes the lock: an open descriptor (close it to release), or -1 with
 * errno: EWOULDBLOCK when it is held, and then *ENGINE_PID is the running
 * engine's pid, or 0 when the holder is not an engine. */
int datalock_take(const char *data_dir, long *engine_pid);

/* The lock file's path into BUF. */
void datalock_path(const char *data_dir, char *buf, size_t len);

#endif
