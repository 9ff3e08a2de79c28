/* The indexer's rest between batches while messages are imported
 * (index_rest), the commit groups' stamp it is told by
 * (db_note_archived, db_archived_within), and the bounded backlog count it
 * decides by (index_run_backlog). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "search/indexer.h"
#include "store/db.h"

static void
test_rests_while_importing(void)
{
	/* 64 rows in 50 ms, 640 to go (0.5 s at that pace): rest as long */
	CHECK(index_rest(0.05, 64, 640, 1) == 0.05);
	/* not importing: never */
	CHECK(index_rest(0.05, 64, 640, 0) == 0);
	/* a slow batch rests a second at most */
	CHECK(index_rest(2.5, 64, 10, 1) == 1.0);
}

static void
test_no_rest_when_behind(void)
{
	/* 64 rows in 0.1 s: a backlog of 64 * 30 + 64 takes over 3 s */
	CHECK(INDEX_CATCH_UP_S == 3.0);
	CHECK(index_rest(0.1, 64, 64 * 30 + 64, 1) == 0);
	CHECK(index_rest(0.1, 64, 64 * 30 - 64, 1) == 0.1);
	/* nothing measured, nothing done, or the backlog unknown: go on */
	CHECK(index_rest(0, 64, 10, 1) == 0);
	CHECK(index_rest(0.1, 0, 10, 1) == 0);
	CHECK(index_rest(0.1, 64, -1, 1) == 0);
}

static void
test_archived_stamp(void)
{
	struct timespec pause = { 0, 30 * 1000000L };

	CHECK(!db_archived_within(1000000000LL));	/* nothing committed yet */
	db_note_archived();
	CHECK(db_archived_within(1000000000LL));
	nanosleep(&pause, NULL);
	CHECK(!db_archived_within(10 * 1000000LL));	/* 30 ms ago: not within 10 ms */
	CHECK(db_archived_within(1000000000LL));
}

static void
test_backlog_counted_up_to_a_limit(void)
{
	char dir[] = "/tmp/ev-test-backlog-XXXXXX", err[512], hash[65];
	struct archive_db *db;
	struct index_run *r;

	CHECK(mkdtemp(dir) != NULL);
	db = db_open(dir, 0, err, sizeof(err));
	CHECK(db != NULL);
	if (db == NULL)
		return;
	for (int i = 0; i < 10; i++) {
		struct db_message m = { .hash = hash, .size = 1, .date_unix = -1, .sort_date = -1 };
		snprintf(hash, sizeof(hash), "%064d", i);
		CHECK_INT(db_message_add(db, &m, NULL), 0);
	}
	r = index_run_open(dir, err, sizeof(err));
	CHECK(r != NULL);
	if (r != NULL) {
		CHECK_INT(index_run_lag(r), 10);
		CHECK_INT(index_run_backlog(r, 4), 4);
		CHECK_INT(index_run_backlog(r, 100), 10);
		index_run_close(r);
	}
	db_close(db);
	{
		char cmd[200];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		CHECK_INT(system(cmd), 0);
	}
}

int
main(void)
{
	RUN(test_rests_while_importing);
	RUN(test_no_rest_when_behind);
	RUN(test_archived_stamp);
	RUN(test_backlog_counted_up_to_a_limit);
	DONE();
}
