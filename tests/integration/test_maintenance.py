"""Keeping the data folder sound: an archive of the old layout (one file per
message) is read, and moved into packs by the engine, interruptibly; orphan
files of that layout are reclaimed by the engine and by `verify --reclaim`,
never one that a record needs; a crash leaves nothing behind in packs; and
commands that write without an engine (pause, resume) do so only under
DATA/engine.lock."""
import fcntl
import hashlib
import os
import re
import shutil
import sqlite3
import threading
import time
import unittest

import archivecheck
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


def make_old_layout(data):
    """Turns an archive into one of the layout before the pack store: each
    message's bytes in DATA/blobs/ab/cd/<hash>, archive.db naming no pack."""
    stored = archivecheck.stored_messages(data)
    for h, raw in stored.items():
        os.makedirs(os.path.dirname(blob_path(data, h)), exist_ok=True)
        with open(blob_path(data, h), "wb") as f:
            f.write(raw)
    db = sqlite3.connect(os.path.join(data, "archive.db"))
    db.execute("UPDATE messages SET pack_segment = NULL, pack_offset = NULL, pack_length = NULL, "
               "pack_codec = NULL")
    db.execute("DELETE FROM segments")
    db.commit()
    db.close()
    shutil.rmtree(os.path.join(data, "packs"))
    return stored


class OldLayoutTest(unittest.TestCase):
    """An archive of one file per message: migrated into packs by the engine,
    interruptible; orphan files of that layout reclaimed, never a needed one."""

    def setUp(self):
        self.d = dovecot.Dovecot().start()
        self.d.fill({"INBOX": 40})
        self.e = Engine()
        self.e.write_source("work", source_file(port=self.d.tls_port, username=self.d.user,
                                                password=self.d.password,
                                                ca_file='"%s"' % self.d.cert_path,
                                                fetch_batch=10, pipeline=1))
        self.e.start(once=True)
        self.assertEqual(self.e.wait(120), 0, self.e.log()[-2000:])
        self.stored = make_old_layout(self.e.data)
        self.assertEqual(len(self.stored), 40)

    def tearDown(self):
        self.e.cleanup()
        self.d.stop()

    def test_old_layout_is_read_then_moved_into_packs(self):
        orphans = {plant_orphan(self.e.data, "orphan %d\r\n" % i) for i in range(3)}
        # read as it is, before any engine moved it
        r = vault.run("verify", "--data", self.e.data)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("40 messages checked", r.stdout)
        self.assertIn("0 missing, 0 corrupt, 3 orphan blobs", r.stdout)
        self.assertEqual(set(archivecheck.stored_messages(self.e.data)), set(self.stored))
        # the engine moves it into packs while it syncs, and sweeps the orphans
        self.e.start(once=True)
        self.assertEqual(self.e.wait(120), 0, self.e.log()[-3000:])
        self.assertTrue(self.e.log_has(r"archive moved into packs .*moved=40"), self.e.log())
        self.assertEqual(blobs_on_disk(self.e.data), set())
        self.assertEqual(archivecheck.stored_messages(self.e.data), self.stored)
        r = vault.run("verify", "--data", self.e.data)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("0 missing, 0 corrupt, 0 orphan blobs", r.stdout)
        self.assertIn("1 segments, 0 damaged, 0 unreferenced", r.stdout)

    def test_damaged_files_stay_where_they_are(self):
        short, flipped = sorted(self.stored)[:2]
        with open(blob_path(self.e.data, short), "r+b") as f:
            f.truncate(10)
        with open(blob_path(self.e.data, flipped), "r+b") as f:
            raw = bytearray(f.read())
            raw[len(raw) // 2] ^= 0x55
            f.seek(0)
            f.write(raw)
        self.e.start(once=True)
        self.assertEqual(self.e.wait(120), 0, self.e.log()[-3000:])
        self.assertTrue(self.e.log_has(r"missing or damaged .*corrupt=2 .*moved=38"), self.e.log())
        self.assertEqual(blobs_on_disk(self.e.data), {short, flipped})
        r = vault.run("verify", "--data", self.e.data)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("corrupt %s" % short, r.stdout)
        self.assertIn("corrupt %s" % flipped, r.stdout)
        self.assertIn("0 missing, 2 corrupt", r.stdout)

    def test_a_migration_killed_halfway_loses_nothing(self):
        self.e.env["EMAILVAULT_MIGRATE_STEP"] = "7"
        self.e.env["EMAILVAULT_CRASH_AFTER_MIGRATED"] = "14"
        self.e.start(once=True)
        self.assertNotEqual(self.e.wait(120), 0, "the crash did not happen")
        left = len(blobs_on_disk(self.e.data))
        self.assertGreaterEqual(left, 40 - 14)          # files go only after their commit
        self.assertEqual(archivecheck.stored_messages(self.e.data), self.stored)
        del self.e.env["EMAILVAULT_CRASH_AFTER_MIGRATED"]
        self.e.start(once=True)
        self.assertEqual(self.e.wait(120), 0, self.e.log()[-3000:])
        self.assertEqual(blobs_on_disk(self.e.data), set())
        self.assertEqual(archivecheck.stored_messages(self.e.data), self.stored)
        r = vault.run("verify", "--data", self.e.data)
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_verify_reclaim_offline_under_the_lock(self):
        orphans = {plant_orphan(self.e.data, "orphan %d\r\n" % i) for i in range(5)}
        kept = set(self.stored)
        holder = LockHolder(self.e.data)
        try:
            r = vault.run("verify", "--reclaim", "--data", self.e.data)
        finally:
            holder.release()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("an engine (pid %d) is running" % os.getpid(), r.stderr)
        self.assertIn("vault.reclaim()", r.stderr)
        self.assertEqual(blobs_on_disk(self.e.data), kept | orphans)
        r = vault.run("verify", "--reclaim", "--data", self.e.data)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for h in orphans:
            self.assertIn("reclaimed %s" % h, r.stdout)
        self.assertIn("5 orphan blobs, 5 reclaimed", r.stdout)
        self.assertEqual(blobs_on_disk(self.e.data), kept)
        check_intact(self, self.e.data, kept)
        h = plant_orphan(self.e.data, "left alone by a plain verify\r\n")
        vault.run("verify", "--data", self.e.data)
        self.assertTrue(os.path.exists(blob_path(self.e.data, h)))


class CrashLeavesNothingTest(unittest.TestCase):
    """With packs, bytes a crash kept from being committed are cut off at the
    next start: no orphan, and the re-import stores them once."""

    def test_crash_between_store_and_commit(self):
        d = dovecot.Dovecot().start()
        e = Engine(env={"EMAILVAULT_CRASH_AFTER_BLOBS": "15"})
        try:
            d.fill({"INBOX": 40})
            e.write_source("work", source_file(port=d.tls_port, username=d.user, password=d.password,
                                               ca_file='"%s"' % d.cert_path, fetch_batch=10,
                                               pipeline=1))
            e.start(once=True)
            self.assertNotEqual(e.wait(120), 0, "the crash did not happen")
            seg = os.path.join(e.data, "packs", "00000001.seg")
            committed = archivecheck.db_rows(e.data, "SELECT committed FROM segments")[0][0]
            self.assertGreater(os.path.getsize(seg), committed)   # 5 records past the commit
            del e.env["EMAILVAULT_CRASH_AFTER_BLOBS"]
            e.start(once=True)
            self.assertEqual(e.wait(120), 0, e.log()[-2000:])
            want = set(d.server_hashes("INBOX").values())
            self.assertEqual(set(archivecheck.stored_messages(e.data)), want)
            r = vault.run("verify", "--data", e.data)
            self.assertEqual(r.returncode, 0, r.stdout)
            self.assertIn("40 messages checked", r.stdout)
            self.assertIn("0 unreferenced records", r.stdout)
        finally:
            e.cleanup()
            d.stop()


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
        self.tmp_file = os.path.join(self.e.data, "packs", "spool", "%d.1" % os.getpid())
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
