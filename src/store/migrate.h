#ifndef EMAILVAULT_STORE_MIGRATE_H
#define EMAILVAULT_STORE_MIGRATE_H
/*
 * From the old layout (one blob file per message, DATA/blobs/ab/cd/<hash>)
 * into the pack store, a few messages at a time so the engine goes on
 * archiving meanwhile. A message is moved by appending its bytes (checked
 * against its hash) to the pack store, recording its new place in the same
 * kind of transaction a batch commits, and only then removing the file: an
 * interruption at any point loses nothing, and the next run goes on where
 * this one stopped. Until a message is moved it is read from its file.
 */
#include <stddef.h>
#include <stdint.h>

struct store;

struct migrate_counts {
	uint64_t moved, bytes;		/* messages now in packs, their size */
	uint64_t missing, corrupt;	/* files that are gone or do not hash right: left as
					 * they are, for verify to report */
};

/* Moves up to N messages. Returns how many were looked at (0: none is left
 * to move), or -1 with ERR (nothing of this step is recorded). */
int migrate_step(struct store *s, int n, struct migrate_counts *c, char *err, size_t errlen);
/* Messages still in the old layout (-1 on a database error). */
int64_t migrate_left(struct store *s);

#endif
