"""emailvault backup: a consistent snapshot while the engine imports and
new mail arrives, verify passing on it, a second backup that copies only
what changed (sealed segments linked or kept, never copied again), a
restore that resumes without downloading again, and clean failures (disk
full, a folder that cannot be written) that never leave a folder looking
complete. Small segments (EMAILVAULT_SEGMENT_MAX) so that some are sealed."""
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import unittest

import dovecot
import mailgen
import vault
from archivecheck import archived, db_rows, server_state, wait_archived
from vault import Engine, run, source_file

SEGMENT_MAX = "262144"


def fetched(e):
    """Messages the engine E fetched and stored, from its log."""
    return sum(int(m.group(1)) for l in e.log_lines("folder archived")
               for m in [re.search(r"\barchived=(\d+)", l)] if m)


def sealed_segments(data):
    return [i for (i,) in db_rows(data, "SELECT id FROM segments WHERE sealed = 1 ORDER BY id")]


def seg(data, i):
    return os.path.join(data, "packs", "%08d.seg" % i)


def is_root():
    return os.geteuid() == 0


class Mount:
    """A tmpfs of SIZE at a fresh folder (root only)."""

    def __init__(self, size, ro=False):
        self.path = tempfile.mkdtemp(prefix="ev-bkfs-")
        opts = "size=%s,mode=0700" % size + (",ro" if ro else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", self.path], check=True)

    def resize(self, size):
        subprocess.run(["mount", "-o", "remount,size=%s" % size, self.path], check=True)

    def close(self):
        subprocess.run(["umount", self.path], check=False)
        os.rmdir(self.path)


class BackupTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dc = dovecot.Dovecot().start()
        cls.dc.create_folders(["Lists"])
        cls.dc.fill(mailgen.build_mailbox({"INBOX": 500, "Lists": 250}, seed=7, duplicates=0,
                                          max_size=30000))

    @classmethod
    def tearDownClass(cls):
        cls.dc.stop()

    def engine(self, tmp=None):
        e = Engine(tmp=tmp, log_level="info", env={"EMAILVAULT_SEGMENT_MAX": SEGMENT_MAX})
        e.write_source("work", source_file(port=self.dc.plain_port, username=self.dc.user,
                                           password=self.dc.password, tls="false", fetch_batch=5,
                                           pipeline=1, poll=10))
        return e

    def backup(self, data, out, ok=True):
        # under umask 0: the backup's modes must not depend on the caller's
        r = subprocess.run(["sh", "-c", 'umask 000; exec "$0" "$@"', vault.BIN, "backup",
                            "--data", data, "--out", out], capture_output=True, text=True,
                           timeout=300)
        if ok:
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def verify(self, data):
        r = run("verify", "--data", data, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def test_while_importing_incremental_and_restore(self):
        e = self.engine()
        tmp = tempfile.mkdtemp(prefix="ev-backup-")
        out = os.path.join(tmp, "backup")
        restored = Engine(tmp=os.path.join(tmp, "restored"), log_level="info")
        stop = threading.Event()
        try:
            total = len(server_state(self.dc))
            e.start()
            gen = mailgen.MailGen(seed=11, max_size=20000)

            def deliver():     # new mail while the import runs and the backup copies
                while not stop.is_set():
                    self.dc.deliver("INBOX", gen.message())
                    time.sleep(0.05)
            t = threading.Thread(target=deliver, daemon=True)
            # 1. in the middle of the import, with mail arriving
            # (and two segments sealed: one grows past its size while the
            # disk is slow to sync, for as long as batches keep coming)
            deadline = time.time() + 60
            while (len(archived(e.data)[0]) < 200 or len(sealed_segments(e.data)) < 2) and \
                    time.time() < deadline:
                time.sleep(0.05)
            t.start()
            r = self.backup(e.data, out)
            live_now = len(archived(e.data)[0])
            stop.set()
            t.join(30)
            self.assertIn("segments:", r.stdout)
            self.assertTrue(os.path.exists(os.path.join(out, "BACKUP")))
            self.assertFalse(os.path.exists(os.path.join(out, "backup.partial")))
            in_backup, nrows = archived(out)
            print("\nbackup during the import: %d of %d messages, %d in the data folder just "
                  "after; %s" % (len(in_backup), total, live_now, r.stdout.strip()))
            self.assertGreater(len(in_backup), 100)
            self.assertLess(len(in_backup), total, "the import had ended: not a backup while it runs")
            self.assertLessEqual(len(in_backup), live_now)
            # a consistent point: every message its records name reads back
            # from its packs (verify re-hashes each one), no location without
            # its message, and nothing committed after the snapshot's point
            out_verify = self.verify(out)
            self.assertIn("0 missing, 0 corrupt", out_verify)
            self.assertEqual(db_rows(out, "SELECT count(*) FROM locations WHERE hash NOT IN "
                                     "(SELECT hash FROM messages)"), [(0,)])
            for (sid, committed) in db_rows(out, "SELECT id, committed FROM segments"):
                self.assertEqual(os.path.getsize(seg(out, sid)), committed)
            # private: files 0600, folders 0700
            for root, dirs, files in os.walk(out):
                self.assertEqual(stat.S_IMODE(os.stat(root).st_mode), 0o700, root)
                for f in files:
                    self.assertEqual(stat.S_IMODE(os.stat(os.path.join(root, f)).st_mode), 0o600, f)
            sealed1 = sealed_segments(out)
            self.assertGreaterEqual(len(sealed1), 2, "no sealed segment: the test's segments are too big")
            # the sealed ones are hard links to the data folder's (same filesystem)
            for i in sealed1:
                self.assertEqual(os.stat(seg(out, i)).st_ino, os.stat(seg(e.data, i)).st_ino)
            # keep this first backup as it is, for the restore below
            first = os.path.join(tmp, "first")
            shutil.copytree(out, first)

            # 2. the import ends; a second backup into the same folder
            # copies only what changed
            want = server_state(self.dc)
            self.assertEqual(wait_archived(e.data, want, timeout=120, proc=e.proc), want, e.log()[-3000:])
            inodes = {i: os.stat(seg(out, i)).st_ino for i in sealed1}
            mtimes = {i: os.stat(seg(out, i)).st_mtime_ns for i in sealed1}
            r = self.backup(e.data, out)
            m = re.search(r"segments: (\d+) copied, (\d+) linked, (\d+) unchanged", r.stdout)
            self.assertIsNotNone(m, r.stdout)
            self.assertEqual(int(m.group(3)), len(sealed1), r.stdout)
            self.assertLessEqual(int(m.group(1)), 1, r.stdout)     # the open segment only
            for i in sealed1:
                self.assertEqual(os.stat(seg(out, i)).st_ino, inodes[i])
                self.assertEqual(os.stat(seg(out, i)).st_mtime_ns, mtimes[i])
            self.assertEqual(archived(out)[0], want)
            self.verify(out)
            e.stop()

            # 3. restore the first backup (taken mid-import) into a new data
            # folder and start an engine on it: it fetches only what the
            # backup lacks, and mail that came after it
            for i in range(5):
                self.dc.deliver("Lists", gen.message())
            want = server_state(self.dc)
            shutil.copytree(first, restored.data)
            os.unlink(os.path.join(restored.data, "BACKUP"))
            shutil.copy(os.path.join(e.sources, "work.lua"), restored.sources)
            restored.env["EMAILVAULT_SEGMENT_MAX"] = SEGMENT_MAX
            log_start = os.path.getsize(self.dc.log_path)
            restored.start(once=True)
            restored.proc.communicate(timeout=180)
            self.assertEqual(restored.proc.returncode, 0, restored.log()[-3000:])
            got, nrows = archived(restored.data)
            self.assertEqual(got, want)
            self.assertEqual(nrows, len(want))
            self.assertEqual(fetched(restored), len(want) - len(in_backup), restored.log()[-3000:])
            # and Dovecot agrees: only that many bodies were sent
            with open(self.dc.log_path, errors="replace") as f:
                f.seek(log_start)
                bodies = sum(int(x) for x in re.findall(r"body_count=(\d+)", f.read()))
            self.assertEqual(bodies, len(want) - len(in_backup))
            self.verify(restored.data)
        finally:
            stop.set()
            e.cleanup()
            restored.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)

    def archive_for_failures(self):
        """A finished archive (engine stopped) for the failure tests."""
        e = self.engine()
        e.start(once=True)
        e.proc.communicate(timeout=180)
        self.assertEqual(e.proc.returncode, 0, e.log()[-3000:])
        return e

    @unittest.skipUnless(is_root(), "mounting a small filesystem needs root")
    def test_disk_full_then_space(self):
        e = self.archive_for_failures()
        mnt = None
        try:
            db = os.path.getsize(os.path.join(e.data, "archive.db"))
            packs = sum(os.path.getsize(os.path.join(e.data, "packs", f))
                        for f in os.listdir(os.path.join(e.data, "packs")) if f.endswith(".seg"))
            mnt = Mount("1m")
            out = os.path.join(mnt.path, "b")
            # full while archive.db is copied, then while the segments are
            for size in (db // 2, db + packs // 2):
                mnt.resize("%dk" % (size // 1024))
                r = self.backup(e.data, out, ok=False)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                print("\n" + r.stderr.strip())
                self.assertIn("disk is full", r.stderr)
                self.assertIn("holds no complete backup", r.stderr)
                self.assertFalse(os.path.exists(os.path.join(out, "BACKUP")))
                self.assertTrue(os.path.exists(os.path.join(out, "backup.partial")))
            # space again: the same folder becomes a complete backup; across
            # filesystems the segments are copied, and kept the next time
            mnt.resize("%dk" % ((db + packs) * 3 // 1024 + 1024))
            r = self.backup(e.data, out)
            self.assertRegex(r.stdout, r"segments: \d+ copied, 0 linked")
            self.assertTrue(os.path.exists(os.path.join(out, "BACKUP")))
            self.assertFalse(os.path.exists(os.path.join(out, "backup.partial")))
            self.verify(out)
            sealed = sealed_segments(out)
            self.assertGreaterEqual(len(sealed), 2)
            # a backup over a complete one that fails: it no longer looks
            # complete (a sealed copy lost, and no room to copy it again)
            os.unlink(seg(out, sealed[0]))
            st = os.statvfs(mnt.path)
            mnt.resize("%dk" % ((st.f_blocks - st.f_bfree) * st.f_frsize // 1024 + 16))
            r = self.backup(e.data, out, ok=False)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("disk is full", r.stderr)
            self.assertFalse(os.path.exists(os.path.join(out, "BACKUP")))
            self.assertTrue(os.path.exists(os.path.join(out, "backup.partial")))
            mnt.resize("%dk" % ((db + packs) * 3 // 1024 + 1024))
            r = self.backup(e.data, out)
            self.assertIn("segments: 2 copied, 0 linked, %d unchanged" % (len(sealed) - 1), r.stdout)
            self.verify(out)
            before = {i: (os.stat(seg(out, i)).st_ino, os.stat(seg(out, i)).st_mtime_ns) for i in sealed}
            r = self.backup(e.data, out)
            self.assertIn("segments: 1 copied, 0 linked, %d unchanged" % len(sealed), r.stdout)
            self.assertEqual(before, {i: (os.stat(seg(out, i)).st_ino, os.stat(seg(out, i)).st_mtime_ns)
                                      for i in sealed})
            self.verify(out)
        finally:
            if mnt:
                mnt.close()
            e.cleanup()

    def test_refused_folders(self):
        e = self.archive_for_failures()
        tmp = tempfile.mkdtemp(prefix="ev-backup-")
        mnt = None
        try:
            # not writable
            if is_root():
                mnt = Mount("1m", ro=True)
                target = mnt.path
            else:
                target = os.path.join(tmp, "ro")
                os.mkdir(target, 0o500)
            r = self.backup(e.data, os.path.join(target, "b") if is_root() else target, ok=False)
            self.assertEqual(r.returncode, 1)
            self.assertRegex(r.stderr, r"Read-only file system|Permission denied")
            # a folder with other things in it, the data folder, inside it
            other = os.path.join(tmp, "other")
            os.mkdir(other)
            open(os.path.join(other, "notes.txt"), "w").close()
            for target, why in ((other, "not empty"), (e.data, "data folder"),
                                (os.path.join(e.data, "packs"), "inside it")):
                r = self.backup(e.data, target, ok=False)
                self.assertEqual(r.returncode, 1, r.stdout)
                self.assertIn(why, r.stderr)
            self.assertEqual(os.listdir(other), ["notes.txt"])
            # usage
            r = run("backup", "--data", e.data)
            self.assertEqual(r.returncode, 2)
            self.assertIn("--out", r.stderr)
        finally:
            if mnt:
                mnt.close()
            e.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
