"""Disk full and I/O errors at every step of storing a message, with the
data folder on a small ext4 filesystem the test mounts (a loop image: real
block allocation, fsync and ENOSPC). Filled so that ENOSPC hits while a big
message spools, while a message is appended to the segment, and inside
the SQLite commit; what filling cannot reach (fdatasync failing with
ENOSPC or EIO, the next segment not starting after a seal, EIO on a write)
comes from tests/harness/faultfs.c, preloaded into the engine.

Each case: the source goes to error kind `storage` saying what failed and
that the disk is full (and where); archive.db passes integrity_check;
every recorded message reads back and hashes right; the engine keeps
answering eval; once space is back (or the fault gone) the import
completes by itself, with every server message archived exactly once and
`emailvault verify` passing. Needs root (mount); skipped otherwise."""
import base64
import hashlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest

import dovecot
from archivecheck import archived, check_complete, db_rows, server_state, stored_messages, wait_archived
from vault import Engine, source_file

FAULTFS = os.environ.get("EMAILVAULT_FAULTFS")
RETRY = "function() return 0.5 end"


class SmallDisk:
    """An ext4 image of MB mebibytes mounted on a temporary folder."""

    def __init__(self, mb):
        self.dir = tempfile.mkdtemp(prefix="ev-disk-")
        self.img = os.path.join(self.dir, "disk.img")
        self.mnt = os.path.join(self.dir, "mnt")
        self.ballast = os.path.join(self.mnt, "ballast")
        os.makedirs(self.mnt)
        with open(self.img, "wb") as f:
            f.truncate(mb << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", self.img], check=True,
                       capture_output=True)
        r = subprocess.run(["mount", "-o", "loop", self.img, self.mnt], capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise OSError(r.stderr.strip() or "mount failed")

    def free(self):
        st = os.statvfs(self.mnt)
        return st.f_bavail * st.f_frsize

    def fill(self, leave):
        """Leaves about LEAVE bytes free (a ballast file takes the rest)."""
        have = os.path.getsize(self.ballast) if os.path.exists(self.ballast) else 0
        want = max(0, have + self.free() - leave)
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, 0)
            if want:
                os.posix_fallocate(fd, 0, want)
            os.fsync(fd)
        finally:
            os.close(fd)

    def release(self):
        os.unlink(self.ballast)
        os.sync()

    def close(self):
        for _ in range(50):
            if subprocess.run(["umount", self.mnt], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def mount_problem():
    """Why the test cannot mount a filesystem here, or None."""
    if os.geteuid() != 0:
        return "needs root to mount a small filesystem (CI runs as root)"
    if shutil.which("mkfs.ext4") is None:
        return "mkfs.ext4 is not installed"
    try:
        SmallDisk(8).close()
    except (OSError, subprocess.CalledProcessError) as e:
        return "cannot loop-mount an ext4 image here: %s" % e
    return None


def random_message(n, size):
    """A message of about SIZE bytes that does not compress (random base64)."""
    body = base64.encodebytes(hashlib.sha256(b"%d" % n).digest() + os.urandom(size * 3 // 4))
    head = ("From: Sender %d <s%d@example.org>\r\nTo: alice@example.org\r\n"
            "Subject: random %d\r\nMessage-ID: <r%d.%d@example.org>\r\n"
            "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n" % (n, n, n, n, os.getpid())).encode()
    return head + body.replace(b"\n", b"\r\n")


class DiskFullTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = mount_problem()
        if why:
            raise unittest.SkipTest(why)

    def setUp(self):
        self.dc = dovecot.Dovecot().start()
        self.addCleanup(self.dc.stop)
        self.disk = SmallDisk(32)
        self.addCleanup(self.disk.close)
        self.ctl = os.path.join(self.disk.dir, "faults")
        self.fault_log = os.path.join(self.disk.dir, "faults.log")

    # ---- helpers ----------------------------------------------------------

    def engine(self, env=None, preload=False):
        env = dict(env or {})
        if preload:
            if not FAULTFS or not os.path.exists(FAULTFS):
                self.skipTest("the fault library (EMAILVAULT_FAULTFS) is not built")
            env["LD_PRELOAD"] = FAULTFS
            env["EVFAULT_CTL"] = self.ctl
            env["EVFAULT_LOG"] = self.fault_log
            # Under ASan the library comes before the sanitizer's runtime.
            env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
        e = Engine(env=env, log_level="info")
        self.addCleanup(e.cleanup)
        e.data = os.path.join(self.disk.mnt, "data")
        e.start()
        return e

    def faults(self, *rules):
        tmp = self.ctl + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(r + "\n" for r in rules))
        os.replace(tmp, self.ctl)

    def add_source(self, e, folder_list=None, **fields):
        f = dict(tls="false", poll=10, pipeline=2, command_timeout=20, connect_timeout=5, on_error=RETRY)
        f.update({k: str(v) for k, v in fields.items()})
        e.write_source("box", source_file(port=self.dc.plain_port, username=self.dc.user,
                                          password=self.dc.password, **f))
        e.reload()

    def wait_storage_error(self, e, step, timeout=60):
        """The source's error once it is kind storage and names STEP (it
        retries meanwhile, and may fail at another step first)."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            src = e.sources_by_id().get("box") or {}
            last = src
            err = src.get("error") or {}
            if src.get("status") == "error" and err.get("kind") == "storage" and \
                    step in err.get("message", ""):
                return err
            self.assertNotEqual(err.get("kind"), "config", err)
            time.sleep(0.1)
        self.fail("no storage error within %ss: %r\n%s" % (timeout, last, e.log()[-4000:]))

    def check_consistent(self, e):
        """While the fault lasts: integrity, nothing recorded unstored, eval."""
        ok = db_rows(e.data, "PRAGMA integrity_check")
        self.assertEqual(ok, [("ok",)])
        recorded = {h for (h,) in db_rows(e.data, "SELECT hash FROM locations")}
        stored = stored_messages(e.data)
        self.assertTrue(recorded <= set(stored), "recorded but not stored: %r" % (recorded - set(stored)))
        for h, raw in stored.items():
            self.assertEqual(hashlib.sha256(raw).hexdigest(), h)
        r = subprocess.run([os.environ.get("EMAILVAULT_BIN", "emailvault"), "verify", "--data", e.data],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(e.eval("return 6 * 7"), 42)

    def finish(self, e, pid):
        want = server_state(self.dc)
        got = wait_archived(e.data, want, timeout=120, proc=e.proc)
        self.assertEqual(len(got), len(want), e.log()[-4000:])
        check_complete(self, e.data, want)
        self.assertEqual(e.proc.pid, pid)
        self.assertIsNone(e.proc.poll(), "the engine exited")
        self.assertEqual(e.sources_by_id()["box"]["status"], "active")
        self.assertEqual(e.stop(), 0)

    # ---- cases ------------------------------------------------------------

    def test_full_while_a_big_message_spools(self):
        self.dc.fill({"INBOX": [random_message(1, 4 << 20)] + [random_message(i, 3000) for i in range(2, 6)]})
        e = self.engine()
        self.disk.fill(leave=1536 << 10)
        self.add_source(e, fetch_batch=10)
        err = self.wait_storage_error(e, "cannot spool a message")
        self.assertIn("the disk holding %s/packs is full" % e.data, err["message"])
        self.check_consistent(e)
        self.assertEqual(os.listdir(os.path.join(e.data, "packs", "spool")), [])
        self.disk.release()
        self.finish(e, e.proc.pid)

    def test_full_while_appending_to_the_segment(self):
        self.dc.fill({"INBOX": [random_message(i, 300 << 10) for i in range(12)]})
        e = self.engine()
        self.disk.fill(leave=700 << 10)
        self.add_source(e, fetch_batch=4)
        err = self.wait_storage_error(e, "cannot store a message")
        self.assertIn("the disk holding %s/packs is full" % e.data, err["message"])
        self.check_consistent(e)
        self.disk.release()
        self.finish(e, e.proc.pid)

    def test_full_inside_the_sqlite_commit(self):
        # Identical copies are stored once: the batch appends nothing and
        # its transaction (5000 locations) is what needs the space.
        one = random_message(7, 2000)
        self.dc.fill({"INBOX": [one]})
        e = self.engine()
        self.add_source(e, fetch_batch=5000)
        self.assertEqual(len(wait_archived(e.data, server_state(self.dc), timeout=60)), 1)
        # Paused while the copies arrive, so that they come in one batch
        # (a slow build would otherwise take them in many small ones).
        e.eval('vault.pause("box") return 1', timeout=20)
        self.dc.fill({"INBOX": [one] * 5000})
        self.disk.fill(leave=1 << 20)
        e.eval('vault.resume("box") return 1', timeout=20)
        err = self.wait_storage_error(e, "cannot record messages in archive.db", timeout=120)
        self.assertIn("the disk holding %s/archive.db is full" % e.data, err["message"])
        self.check_consistent(e)
        self.disk.release()
        self.finish(e, e.proc.pid)

    def check_sync_fails(self, errname, said):
        self.dc.fill({"INBOX": [random_message(i, 5000) for i in range(30)]})
        e = self.engine(preload=True)
        self.faults("sync .seg %s 0 1" % errname)
        self.add_source(e, fetch_batch=5)
        err = self.wait_storage_error(e, "cannot make the messages durable")
        self.assertIn(said, err["message"])
        with open(self.fault_log) as f:
            self.assertIn("sync ", f.read())
        self.faults()
        self.check_consistent(e)
        self.finish(e, e.proc.pid)

    def test_fdatasync_fails_enospc(self):
        self.check_sync_fails("ENOSPC", "the disk holding %s/packs is full" % os.path.join(self.disk.mnt, "data"))

    def test_fdatasync_fails_eio(self):
        self.check_sync_fails("EIO", "Input/output error")

    def test_next_segment_cannot_start_after_a_seal(self):
        self.dc.fill({"INBOX": [random_message(i, 40 << 10) for i in range(24)]})
        e = self.engine(env={"EMAILVAULT_SEGMENT_MAX": "150000"}, preload=True)
        self.faults("write 00000003.seg ENOSPC 0 -1")
        self.add_source(e, fetch_batch=2, pipeline=1)
        # Batches committed in one group may fill a segment past its size
        # before it is sealed, so how many messages reach segment 3 varies:
        # more mail comes until one must be stored there.
        err = None
        for extra in range(10):
            try:
                err = self.wait_storage_error(e, "cannot store a message", timeout=10)
                break
            except AssertionError:
                self.dc.fill({"INBOX": [random_message(100 + 4 * extra + i, 40 << 10)
                                        for i in range(4)]})
        self.assertIsNotNone(err, "segment 3 was never needed\n" + e.log()[-3000:])
        self.assertIn("is full", err["message"])
        sealed = db_rows(e.data, "SELECT id, committed, sha256 FROM segments WHERE sealed = 1 ORDER BY id")
        self.assertEqual([s[0] for s in sealed], [1, 2])
        self.check_consistent(e)
        self.faults()
        self.finish(e, e.proc.pid)
        # A sealed segment is never written again.
        after = db_rows(e.data, "SELECT id, committed, sha256 FROM segments WHERE id <= 2 ORDER BY id")
        self.assertEqual(after, sealed)
        for seg, committed, _ in sealed:
            self.assertEqual(os.path.getsize(os.path.join(e.data, "packs", "%08d.seg" % seg)), committed)

    def test_eio_while_appending(self):
        self.dc.fill({"INBOX": [random_message(i, 5000) for i in range(20)]})
        e = self.engine(preload=True)
        self.faults("write .seg EIO 3 2")
        self.add_source(e, fetch_batch=5)
        err = self.wait_storage_error(e, "cannot store a message in %s/packs: Input/output error" % e.data)
        self.faults()
        self.check_consistent(e)
        self.finish(e, e.proc.pid)


if __name__ == "__main__":
    unittest.main(verbosity=2)
