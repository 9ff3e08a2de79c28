#ifndef EMAILVAULT_STORE_SYNCER_H
#define EMAILVAULT_STORE_SYNCER_H
/*
 * fdatasync off the event loop: one thread that makes a file durable and
 * then says so to the loop (through a pipe). On a busy disk one fdatasync
 * can take a quarter of a second; on the loop that would hold every
 * source and the control socket. One request at a time.
 */
struct event_base;
struct syncer;

/* NULL with errno. */
struct syncer *syncer_new(struct event_base *base);
/* fdatasync(FD) on the thread, which then closes FD; DONE(UD, 0 or an
 * errno) runs on the loop. -1 with errno (EBUSY: one is running; FD is
 * not closed then). */
int syncer_start(struct syncer *s, int fd, void (*done)(void *ud, int err), void *ud);
int syncer_busy(const struct syncer *s);
/* Waits for a request still running (its DONE is not called), then frees:
 * before the loop's base is freed. */
void syncer_free(struct syncer *s);

#endif
