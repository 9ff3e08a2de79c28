"""kill -9 anywhere: the engine is SIGKILLed at random moments of an import
(small batches) and of continuous sync while new mail keeps arriving, and
restarted each time. No help from the engine (no crash-point variables).
In the end the archive holds every server message exactly once, every blob
re-hashes to its name and `emailvault verify` passes.

The moments come from a seeded generator; the seed is printed, and
EMAILVAULT_KILL_SEED=N replays a run."""
import os
import random
import signal
import threading
import time
import unittest

import dovecot
import mailgen
from archivecheck import archived, check_complete, server_state, wait_archived
from vault import Engine, source_file

IMPORT_KILLS = 10
SYNC_KILLS = 10


class KillNineTest(unittest.TestCase):
    def test_sigkill_at_random_moments(self):
        seed = int(os.environ.get("EMAILVAULT_KILL_SEED") or time.time_ns() % 1000000)
        print("\nkill -9 seed: %d (EMAILVAULT_KILL_SEED=%d replays it)" % (seed, seed))
        rnd = random.Random(seed)
        dc = dovecot.Dovecot().start()
        e = Engine(log_level="info")
        try:
            dc.create_folders(["Lists", "Lists/dev"])
            # enough mail that the import outlasts half its kills (it does
            # 550 messages in about 0.15 s here)
            box = mailgen.build_mailbox({"INBOX": 600, "Lists": 300, "Lists/dev": 200},
                                        seed=seed % 97, duplicates=20, max_size=20000)
            dc.fill(box)
            e.write_source("work", source_file(port=dc.plain_port, username=dc.user, password=dc.password,
                                               tls="false", fetch_batch=4, pipeline=2, poll=10,
                                               command_timeout=10, connect_timeout=5,
                                               on_error="function() return 0.2 end"))
            moments = []

            def count():
                try:
                    return len(archived(e.data)[0])
                except Exception:       # not created yet, or being created
                    return 0

            def kill_after(delay, target=None):
                """Kills DELAY seconds after the start, or after TARGET messages
                are archived and then DELAY more."""
                e.start(wait=False)
                if target is not None:
                    deadline = time.time() + 30
                    while count() < target and time.time() < deadline and e.proc.poll() is None:
                        time.sleep(0.005)
                time.sleep(delay)
                alive = e.proc.poll() is None
                n = count()
                e.proc.send_signal(signal.SIGKILL)
                e.proc.wait()
                e.proc.communicate()
                moments.append((round(delay, 3), n, alive))
                self.assertTrue(alive, "the engine had exited before the kill:\n" + e.log()[-3000:])

            # 1. The import: killed while connecting, then at random points
            # of its progress, while batches stream and commit.
            total = len(server_state(dc))
            for i in range(IMPORT_KILLS):
                if i < 2:
                    kill_after(rnd.uniform(0.0, 0.08))
                else:
                    done = count()
                    step = rnd.randint(1, max(1, (total - done) // 10))
                    kill_after(rnd.uniform(0.0, 0.01), target=min(done + step, total))
            print("import kills: %r" % moments)
            self.assertLess(moments[IMPORT_KILLS // 2][1], total, "the import ended before half the kills")
            # 2. Continuous sync, mail arriving all the time.
            stop = threading.Event()
            gen = mailgen.MailGen(seed=seed + 1, max_size=20000)
            folders = ["INBOX", "Lists", "INBOX", "Lists/dev"]

            def deliver():
                i = 0
                while not stop.is_set() and i < 60:
                    dc.deliver(folders[i % len(folders)], gen.message())
                    i += 1
                    time.sleep(rnd.uniform(0.05, 0.3))
            t = threading.Thread(target=deliver, daemon=True)
            t.start()
            try:
                for _ in range(SYNC_KILLS):
                    kill_after(rnd.uniform(0.1, 1.5))
            finally:
                stop.set()
                t.join(60)
            print("kills (after seconds, messages archived, alive): %r" % moments)
            # 3. A last run, left alone, catches up.
            want = server_state(dc)
            # (the log and a stale control.sock of the killed runs are still
            # there: wait for this run's own start before anything else)
            started = len(e.log_lines("sources reloaded"))
            e.start(wait=False)
            e.wait_for_log("sources reloaded", count=started + 1)
            got = wait_archived(e.data, want, timeout=90, proc=e.proc)
            self.assertEqual(got, want, e.log()[-3000:])
            rc = e.stop()
            self.assertEqual(rc, 0, (e.stderr or "") + e.log()[-2500:])
            check_complete(self, e.data, want, "work")
            self.assertEqual(os.listdir(os.path.join(e.data, "packs", "spool")), [])
            self.assertEqual(dc.seen_count(), 0)
        finally:
            e.cleanup()
            dc.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
