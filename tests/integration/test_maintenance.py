"""Keeping the data folder sound: orphan blobs (stored by a batch that a
crash kept from committing) are reclaimed by the engine and by `verify
--reclaim`, never one that a record names; and commands that write without
an engine (pause, resume) do so only under DATA/engine.lock."""
import fcntl
import hashlib
import os
import re
import sqlite3
import threading
import time
import unittest

import dovecot
import vault
from vault import Engine, source_file


def blob_path(data, h):
    return os.path.join(data, "blobs", h[:2], h[2:4], h)


def blobs_on_disk(data):
    out = set()
    root = os.path.join(data, "blobs")
    for dirpath, _, files in os.walk(root):
        if os.path.relpath(dirpath, root).startswith("tmp"):
            continue
        out.update(f for f in files if re.fullmatch(r"[0-9a-f]{64}", f))
    return out


def recorded(data):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "archive.db"), uri=True)
    try:
        return {h for (h,) in db.execute("SELECT hash FROM messages")}
    finally:
        db.close()


def check_intact(testcase, data, hashes):
    for h in hashes:
        with open(blob_path(data, h), "rb") as f:
            testcase.assertEqual(hashlib.sha256(f.read()).hexdigest(), h)


def plant_orphan(data, text):
    """A blob file no record names, as a crash would leave it."""
    raw = text.encode()
    h = hashlib.sha256(raw).hexdigest()
    os.makedirs(os.path.dirname(blob_path(data, h)), exist_ok=True)
    with open(blob_path(data, h), "wb") as f:
        f.write(raw)
    return h


class LockHolder:
    """Holds DATA/engine.lock the way the engine does (flock, exclusive). With
    pid=True it writes its own pid, as an engine that is starting has."""

    def __init__(self, data, pid=True):
        self.fd = os.open(os.path.join(data, "engine.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(self.fd, 0)
        if pid:
            os.pwrite(self.fd, b"%d\n" % os.getpid(), 0)

    def release(self):
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None

    def release_after(self, seconds):
        threading.Timer(seconds, self.release).start()


class OrphanTest(unittest.TestCase):
    """Real orphans from a crash injected between publishing and committing."""

    def setUp(self):
        self.d = dovecot.Dovecot().start()
        self.d.fill({"INBOX": 40})
        self.e = Engine()
        self.e.write_source("work", source_file(port=self.d.tls_port, username=self.d.user,
                                                password=self.d.password,
                                                ca_file='"%s"' % self.d.cert_path,
                                                fetch_batch=10, pipeline=1))

    def tearDown(self):
        self.e.cleanup()
        self.d.stop()

    def crash_leaving_orphans(self):
        """Aborts the engine after 15 stored blobs: one batch of 10 committed,
        5 blobs of the next stored and never recorded."""
        self.e.env["EMAILVAULT_CRASH_AFTER_BLOBS"] = "15"
        self.e.start(once=True)
        self.assertNotEqual(self.e.wait(120), 0, "the crash did not happen")
        del self.e.env["EMAILVAULT_CRASH_AFTER_BLOBS"]
        orphans = blobs_on_disk(self.e.data) - recorded(self.e.data)
        self.assertEqual(len(orphans), 5)
        r = vault.run("verify", "--data", self.e.data)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("0 missing, 0 corrupt, 5 orphan blobs", r.stdout)
        return orphans

    def test_verify_reclaim_offline_under_the_lock(self):
        orphans = self.crash_leaving_orphans()
        kept = recorded(self.e.data)
        # an engine holds the lock: refused, nothing removed
        holder = LockHolder(self.e.data)
        try:
            r = vault.run("verify", "--reclaim", "--data", self.e.data)
        finally:
            holder.release()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("an engine (pid %d) is running" % os.getpid(), r.stderr)
        self.assertIn("vault.reclaim()", r.stderr)
        self.assertEqual(blobs_on_disk(self.e.data), kept | orphans)
        # no engine: every orphan goes, each one named, and nothing else
        r = vault.run("verify", "--reclaim", "--data", self.e.data)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for h in orphans:
            self.assertIn("reclaimed %s" % h, r.stdout)
        self.assertIn("5 orphan blobs, 5 reclaimed", r.stdout)
        self.assertEqual(blobs_on_disk(self.e.data), kept)
        check_intact(self, self.e.data, kept)
        r = vault.run("verify", "--data", self.e.data)
        self.assertIn("10 messages checked", r.stdout)
        self.assertIn("0 missing, 0 corrupt, 0 orphan blobs", r.stdout)
        # verify without --reclaim never removes anything
        h = plant_orphan(self.e.data, "left alone by a plain verify\r\n")
        vault.run("verify", "--data", self.e.data)
        self.assertTrue(os.path.exists(blob_path(self.e.data, h)))

    def test_engine_reclaims_at_start_beside_the_import(self):
        orphans = sorted(self.crash_leaving_orphans())
        # Half of the orphans' messages leave the server: nothing will ever
        # name them. The others are fetched again by the next run, which finds
        # their bytes stored (dedup) while the sweep, slowed down to overlap
        # with the import, walks the blobs: those must stay.
        uid_of = {hashlib.sha256(raw).hexdigest(): uid for uid, raw in
                  self.d.server_messages("INBOX")}
        gone, back = orphans[:2], orphans[2:]
        for h in gone:
            self.d.doveadm("expunge", "mailbox", "INBOX", "uid", uid_of[h], user=self.d.user)
        self.e.env["EMAILVAULT_RECLAIM_PACE"] = "1:0.02"
        t0 = time.time()
        self.e.start(once=True)
        self.assertEqual(self.e.wait(120), 0, self.e.log()[-3000:])
        took, log = time.time() - t0, self.e.log()
        want = set(self.d.server_hashes("INBOX").values())
        self.assertEqual(len(want), 38)
        self.assertEqual(recorded(self.e.data), want)
        self.assertTrue(set(back) <= want)
        self.assertEqual(blobs_on_disk(self.e.data), want)
        check_intact(self, self.e.data, want)
        for h in gone:
            self.assertRegex(log, r"INFO  \[-\] orphan blob reclaimed hash=%s size=\d+" % h)
        done = re.findall(r"orphan sweep done bytes=\d+ reason=start reclaimed=(\d+) scanned=\d+", log)
        self.assertEqual(len(done), 2, log[-3000:])      # the crashed run's, then this one's
        self.assertGreaterEqual(int(done[-1]), len(gone))
        r = vault.run("verify", "--data", self.e.data)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("38 messages checked", r.stdout)
        self.assertIn("0 missing, 0 corrupt, 0 orphan blobs", r.stdout)
        self.assertGreater(took, 2, "the sweep did not overlap the import")


class ReclaimInEngineTest(unittest.TestCase):
    def test_vault_reclaim_and_verify_reclaim_beside_an_engine(self):
        with Engine() as e:
            e.start()
            e.wait_for_log("orphan sweep done .*reason=start")
            # a record made behind the engine's back names this blob: it stays
            named = plant_orphan(e.data, "named by a record\r\n")
            db = sqlite3.connect(os.path.join(e.data, "archive.db"))
            db.execute("INSERT INTO messages(hash, size) VALUES (?, 19)", (named,))
            db.commit()
            db.close()
            orphan = plant_orphan(e.data, "an orphan\r\n")
            junk = os.path.join(e.data, "blobs", orphan[:2], orphan[2:4], "not-a-blob")
            open(junk, "w").close()
            # the engine runs: the offline way refuses and removes nothing
            r = vault.run("verify", "--reclaim", "--data", e.data)
            self.assertEqual(r.returncode, 1)
            self.assertIn("an engine (pid %d) is running" % e.proc.pid, r.stderr)
            self.assertIn("vault.reclaim()", r.stderr)
            self.assertTrue(os.path.exists(blob_path(e.data, orphan)))
            res = e.eval("return vault.reclaim()")
            self.assertEqual((res["reclaimed"], res["orphans"], res["scanned"]), (1, 1, 2))
            self.assertEqual(res["bytes"], len("an orphan\r\n"))
            self.assertFalse(os.path.exists(blob_path(e.data, orphan)))
            self.assertTrue(os.path.exists(blob_path(e.data, named)))
            self.assertTrue(os.path.exists(junk))
            e.wait_for_log("orphan blob reclaimed hash=%s size=11" % orphan)
            e.wait_for_log("orphan sweep done bytes=11 reason=vault.reclaim reclaimed=1 scanned=2")
            self.assertEqual(e.eval("return vault.reclaim().reclaimed"), 0)
            self.assertEqual(e.stop(), 0)


class OfflineWriteLockTest(unittest.TestCase):
    """pause/resume without a reachable engine write only under the lock and
    open only archive.db (the blob store would clean blobs/tmp)."""

    def setUp(self):
        self.e = Engine()
        self.e.write_source("work", source_file(port=1))
        self.e.start()
        self.e.wait_for_log(r"\[work\] status .*to=error")
        self.assertEqual(self.e.stop(), 0)
        self.tmp_file = os.path.join(self.e.data, "blobs", "tmp", "%d.1" % os.getpid())
        with open(self.tmp_file, "wb") as f:
            f.write(b"a starting engine's unfinished blob")

    def tearDown(self):
        self.e.cleanup()

    def paused(self):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.e.data, "archive.db"), uri=True)
        try:
            return db.execute("SELECT paused FROM sources WHERE id = 'work'").fetchone()[0]
        finally:
            db.close()

    def test_a_held_lock_is_never_written_beside(self):
        for pid, says in ((True, "does not answer on its control socket"),
                          (False, "another emailvault command holds")):
            holder = LockHolder(self.e.data, pid=pid)
            try:
                for action in ("pause", "resume"):
                    with self.subTest(action=action, engine_pid=pid):
                        t0 = time.time()
                        r = vault.run(action, "--data", self.e.data, "work")
                        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                        self.assertIn(says, r.stderr)
                        self.assertIn("nothing was changed", r.stderr)
                        self.assertGreater(time.time() - t0, 3)   # it waited for a socket
                        self.assertEqual(self.paused(), 0)
                        self.assertTrue(os.path.exists(self.tmp_file))
            finally:
                holder.release()

    def test_waits_for_the_lock_then_writes(self):
        holder = LockHolder(self.e.data, pid=False)
        holder.release_after(1.0)
        t0 = time.time()
        r = vault.run("pause", "--data", self.e.data, "work")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreater(time.time() - t0, 0.9)
        self.assertIn("no engine is running", r.stdout)
        self.assertEqual(self.paused(), 1)
        self.assertTrue(os.path.exists(self.tmp_file))
        r = vault.run("resume", "--data", self.e.data, "work")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.paused(), 0)
        self.assertTrue(os.path.exists(self.tmp_file))

    def test_an_engine_starts_once_a_short_command_is_done(self):
        holder = LockHolder(self.e.data, pid=False)
        holder.release_after(1.0)
        self.e.start(wait=False)  # waits for the lock instead of failing
        self.e.wait_for_log("sources reloaded", count=2)
        self.e.wait_for_socket()
        self.assertFalse(os.path.exists(self.tmp_file))   # now it may clean up
        r = vault.run("pause", "--data", self.e.data, "work")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("pause: work", r.stdout)
        self.assertEqual(self.e.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
