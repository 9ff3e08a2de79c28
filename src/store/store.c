#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "store/blob.h"
#include "store/db.h"
#include "store/pack.h"
#include "store/remote.h"

static struct store *current;

struct store *
store_open(const char *data_dir, int readonly, char *err, size_t errlen)
{
	struct store *s = calloc(1, sizeof(*s));

	err[0] = '\0';
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->readonly = readonly;
	s->data_dir = strdup(data_dir);
	s->db = db_open(data_dir, readonly, err, errlen);
	if (s->db == NULL)
		goto fail;
	if (!readonly) {
		char path[4096];
		struct stat st;
		const char *max = getenv("EMAILVAULT_SEGMENT_MAX");
		s->packs = pack_store_open(data_dir, db_handle(s->db), err, errlen);
		if (s->packs == NULL)
			goto fail;
		/* Small segments, so that the tests reach seals (docs/testing.md). */
		if (max && strtoull(max, NULL, 10) > 0)
			pack_store_set_segment_max(s->packs, strtoull(max, NULL, 10));
		/* One file per message was the layout before the pack store;
		 * such an archive is migrated into packs by the engine. */
		snprintf(path, sizeof(path), "%s/blobs", data_dir);
		if (stat(path, &st) == 0) {
			s->blobs = blob_store_open(data_dir, err, errlen);
			if (s->blobs == NULL)
				goto fail;
		}
	}
	return s;
fail:
	store_close(s);
	return NULL;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	if (current == s)
		current = NULL;
	/* first: what is in flight ends and is recorded, then its thread
	 * stops, and no upload's end reaches the packs after */
	remote_drain(s->remote, 120);
	remote_close(s->remote);
	pack_store_close(s->packs);
	db_close(s->db);
	blob_store_close(s->blobs);
	free(s->data_dir);
	free(s);
}

void
store_set_current(struct store *s)
{
	current = s;
}

struct store *
store_current(void)
{
	return current;
}
