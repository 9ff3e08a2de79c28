"""The pack store on S3 against a real S3 (Ceph RADOS Gateway, tests/harness/rgw.py,
one cluster for the file): an import whose segments go to S3 (parts before each
commit, sealed segments whole, multipart above the part size) and reads back from S3
once the local cache has evicted them; the bucket checked at start (wrong secret, no
such bucket, unreachable: kind storage, the server's error); a crash between an upload
and its commit and a kill -9 mid-import lose and duplicate nothing, and the part a
crash left unnamed is swept; two engines sharing one bucket and prefix never touch
each other's objects; `emailvault check` validates storage = s3 { ... }."""
import hashlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
import unittest

import dovecot
import mailgen
import rgw
import vault
from archivecheck import archived, db_rows, server_state, wait_archived
from vault import Engine, source_file

S = None
DC = None
BUCKET = "vault-archive"
WANT = None


def setUpModule():
    global S, DC, WANT
    if rgw.available():
        raise unittest.SkipTest(rgw.available())
    S = rgw.Rgw(min_part=64 * 1024).start()
    print("rgw started in %.1f s" % S.start_seconds)
    rgw.S3(S.endpoint, S.access_key, S.secret_key).create_bucket(BUCKET)
    DC = dovecot.Dovecot().start()
    DC.create_folders(["Lists"])
    DC.fill(mailgen.build_mailbox({"INBOX": 90, "Lists": 40}, seed=5, duplicates=6,
                                  max_size=20000))
    WANT = server_state(DC)


def tearDownModule():
    if DC:
        DC.stop()
    if S:
        S.stop()


def storage_config(prefix, secret=None, endpoint=None, bucket=BUCKET, extra=""):
    return """return {
  storage = s3 {
    endpoint = "%s",
    bucket = "%s",
    prefix = "%s",
    access_key = "%s",
    secret_key = secret.env("TEST_S3_SECRET"),
    segment_size = 150000,
    part_size = 65536,
    multipart_threshold = 100000,
    cache_size = 0,
    %s
  },
}
""" % (endpoint or S.endpoint, bucket, prefix, S.access_key, extra), {
        "TEST_S3_SECRET": secret or S.secret_key}


class S3Base(unittest.TestCase):
    def setUp(self):
        self.s3 = rgw.S3(S.endpoint, S.access_key, S.secret_key)
        self.engines = []

    def tearDown(self):
        for e in self.engines:
            e.cleanup()

    def engine(self, prefix, secret=None, endpoint=None, bucket=BUCKET, env=None, batch=8):
        text, senv = storage_config(prefix, secret, endpoint, bucket)
        senv.update(env or {})
        e = Engine(log_level="info", env=senv)
        e.write_config(text)
        e.write_source("work", source_file(port=DC.plain_port, username=DC.user,
                                           password=DC.password, tls="false", fetch_batch=batch,
                                           poll=30, on_error="function() return 0.2 end"))
        self.engines.append(e)
        return e

    def engine_id(self, e):
        return db_rows(e.data, "SELECT value FROM storage_info WHERE key = 'engine_id'")[0][0]

    def named_objects(self, e):
        """Every object key archive.db names (prefix included)."""
        parts = [k for (k,) in db_rows(e.data, "SELECT key FROM segment_parts")]
        whole = [k for (k,) in db_rows(e.data, "SELECT object FROM segments WHERE object IS NOT NULL")]
        return parts, whole

    def check_s3_complete(self, e, prefix):
        """Each object archive.db names is in S3 with its bytes: the parts of a segment
        are its file's bytes in order, a sealed object is the file (where still local)."""
        parts, whole = self.named_objects(e)
        keys = set(self.s3.keys(BUCKET, prefix))
        for k in parts + whole:
            self.assertIn(prefix + k, keys)
        return parts, whole

    def check_complete(self, e, prefix):
        got, rows = archived(e.data)
        self.assertEqual(got, WANT)
        self.assertEqual(rows, len(WANT), "a message recorded twice")
        self.check_s3_complete(e, prefix)
        # every object of this engine in S3 is named by archive.db (swept, or not left)
        eid = self.engine_id(e)
        parts, whole = self.named_objects(e)
        named = set(prefix + k for k in parts + whole)
        for k in self.s3.keys(BUCKET, prefix + eid + "/"):
            self.assertIn(k, named)

    def read_all(self, e):
        """Reads every archived message back through the running engine (the store's
        reader, which checks each record's hash): the number read."""
        hashes = [h for (h,) in db_rows(e.data, "SELECT hash FROM messages")]
        r = e.eval("local n = 0 for _, h in ipairs({%s}) do "
                   "local m, err = vault.message(h, { raw = true, text = false }) "
                   "if not m then return 'unreadable ' .. h .. ': ' .. tostring(err) end "
                   "n = n + 1 end return n" % ",".join('"%s"' % h for h in hashes), timeout=300)
        return r


class ImportTest(S3Base):
    def test_import_into_s3_and_read_back_from_it(self):
        # the indexer off: it would read (and so fetch back) what the cache evicts
        e = self.engine("imp/", env={"EMAILVAULT_INDEXER": "off"})
        e.start(once=True)
        self.assertEqual(e.wait(timeout=300), 0, e.log())
        got = wait_archived(e.data, WANT, timeout=1)
        self.assertEqual(got, WANT)
        eid = self.engine_id(e)
        self.assertRegex(eid, "^[0-9a-f]{16}$")
        parts, whole = self.check_s3_complete(e, "imp/")
        self.assertGreaterEqual(len(whole), 2, "several sealed segments stored whole")
        for k in parts + whole:
            self.assertTrue(k.startswith(eid + "/seg/"), k)
        # sealed segments went up in parts (multipart) when above the threshold
        multipart = 0
        for k in whole:
            _, h, _ = self.s3.request("HEAD", BUCKET, "imp/" + k)
            multipart += h.get("etag", "").strip('"').count("-") == 1
        self.assertGreaterEqual(multipart, 1)
        # a sealed segment in S3 is its local file byte for byte (and its parts are gone)
        seg = db_rows(e.data, "SELECT id FROM segments WHERE object IS NOT NULL ORDER BY id")[0][0]
        self.assertEqual(db_rows(e.data, "SELECT count(*) FROM segment_parts WHERE segment = ?", seg),
                         [(0,)])
        # the cache (size 0) kept none of the sealed files: reading needs S3
        local = sorted(os.listdir(os.path.join(e.data, "packs")))
        sealed_local = [f for f in local if f.endswith(".seg") and
                        db_rows(e.data, "SELECT object FROM segments WHERE id = ?", int(f[:-4]))[0][0]]
        self.assertEqual(sealed_local, [])
        e.start()
        v = e.eval("return vault.storage()")
        self.assertEqual((v["kind"], v["engine_id"], v["bucket"], v["prefix"]),
                         ("s3", eid, BUCKET, "imp/"))
        self.assertNotIn(S.secret_key, json.dumps(v))
        n = self.read_all(e)
        self.assertEqual(n, len(set(WANT.values())), n)
        self.assertTrue(os.path.exists(os.path.join(e.data, "packs", "%08d.seg" % seg)))
        obj = self.s3.get(BUCKET, "imp/" + whole[0])
        with open(os.path.join(e.data, "packs", "%08d.seg" % seg), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), hashlib.sha256(obj).hexdigest())
        self.assertEqual(e.stop(), 0)
        # what the operator sees
        self.assertTrue(e.log_has(r"archive storage on S3 .*engine_id=%s" % eid))


class StartCheckTest(S3Base):
    def start_fails(self, e):
        e.start(wait=False)
        rc = e.wait(timeout=120)
        self.assertEqual(rc, 1, e.log())
        line = e.log_lines("the archive's storage cannot be used")
        self.assertTrue(line, e.log())
        self.assertIn("kind=storage", line[0])
        self.assertEqual(archived(e.data)[1], 0)
        return line[0]

    def test_wrong_secret_refused_with_the_servers_error(self):
        wrong = S.secret_key[:-4] + "AAAA"
        e = self.engine("bad/", secret=wrong)
        line = self.start_fails(e)
        self.assertIn("SignatureDoesNotMatch", line)
        self.assertIn("the secret key is wrong", line)
        self.assertNotIn(wrong, e.log())
        self.assertNotIn(S.secret_key, e.log())

    def test_no_such_bucket(self):
        e = self.engine("x/", bucket="no-such-bucket")
        self.assertIn("NoSuchBucket", self.start_fails(e))

    def test_clock_skew(self):
        e = self.engine("x/", env={"EMAILVAULT_S3_CLOCK_SKEW": "3600"})
        line = self.start_fails(e)
        self.assertIn("RequestTimeTooSkewed", line)
        self.assertIn("clock is too far", line)

    def test_unreachable(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        e = self.engine("x/", endpoint="http://127.0.0.1:%d" % port)
        e.start(wait=False)
        self.assertEqual(e.wait(timeout=120), 1, e.log())
        line = e.log_lines("the archive's storage cannot be used")[0]
        self.assertIn("kind=refused", line)
        self.assertIn("127.0.0.1:%d" % port, line)


class CrashTest(S3Base):
    def test_crash_between_upload_and_commit(self):
        e = self.engine("crash/", env={"EMAILVAULT_CRASH_AFTER_UPLOADS": "3"})
        e.start(wait=False)
        e.wait(timeout=120)
        self.assertTrue(e.log_has("crash injection: abort after 3 uploads"), e.log())
        committed = archived(e.data)[1]
        eid = self.engine_id(e)
        in_s3 = self.s3.keys(BUCKET, "crash/" + eid + "/")
        parts, whole = self.named_objects(e)
        unnamed = [k for k in in_s3 if k[len("crash/"):] not in parts + whole]
        # the third part is stored and no transaction names it; any other unnamed
        # one belongs to a segment stored whole since (its deletion was queued)
        crashed = [k for k in unnamed if k.endswith(".3")]
        self.assertEqual(len(crashed), 1, (in_s3, parts, whole))
        for k in unnamed:
            if k not in crashed:
                seg = k.split("/seg/")[1].split("/")[0]
                self.assertIn("%s/seg/%s.seg" % (eid, seg), whole)
        e.env.pop("EMAILVAULT_CRASH_AFTER_UPLOADS")
        e.start(once=True)
        self.assertEqual(e.wait(timeout=300), 0, e.log())
        self.assertGreater(len(WANT), committed)
        self.assertTrue(e.log_has(r"S3 object no record names removed key=%s" % crashed[0][len("crash/"):]),
                        e.log())
        for k in unnamed:
            self.assertIsNone(self.s3.get(BUCKET, k))
        self.check_complete(e, "crash/")

    def test_kill9_mid_import(self):
        e = self.engine("kill/", batch=4)
        e.start()
        deadline = time.time() + 60
        while time.time() < deadline and archived(e.data)[1] < 20:
            time.sleep(0.02)
        e.proc.send_signal(signal.SIGKILL)
        e.wait()
        self.assertLess(archived(e.data)[1], len(WANT))
        e.start(once=True)
        self.assertEqual(e.wait(timeout=300), 0, e.log())
        self.check_complete(e, "kill/")
        e.start()
        self.assertEqual(self.read_all(e), len(set(WANT.values())))
        self.assertEqual(e.stop(), 0)


FAULTFS = os.environ.get("EMAILVAULT_FAULTFS")


class SyncFailTest(S3Base):
    def test_failed_segment_sync_uploads_nothing_it_lost(self):
        """A segment fdatasync that fails (tests/harness/faultfs.c: the bytes
        written since the last good sync read back as zeros, and the next sync
        succeeds over the hole) cuts the tail off; nothing of it goes to S3, and
        the upload of a commit group takes no sync error meant for the group's own
        sync. Sync calls on segment files: the first makes segment 1's header
        durable, then each commit group syncs once; the third fails."""
        if not FAULTFS or not os.path.exists(FAULTFS):
            self.skipTest("the fault library (EMAILVAULT_FAULTFS) is not built")
        ctl = os.path.join(tempfile.gettempdir(), "ev-s3-faults-%d" % os.getpid())
        flog = ctl + ".log"
        with open(ctl, "w") as f:
            f.write("sync .seg EIO 2 1\n")
        self.addCleanup(lambda: [os.path.exists(p) and os.unlink(p) for p in (ctl, flog)])
        e = self.engine("syncfail/", batch=4, env={
            "LD_PRELOAD": FAULTFS, "EVFAULT_CTL": ctl, "EVFAULT_LOG": flog,
            "EMAILVAULT_INDEXER": "off",
            "ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")})
        e.start()
        got = wait_archived(e.data, WANT, timeout=240, proc=e.proc)
        self.assertEqual(got, WANT, e.log()[-4000:])
        with open(flog) as f:
            self.assertIn("sync ", f.read())
        self.assertTrue(e.log_has("cannot make the messages durable"), e.log()[-4000:])
        # every message read back and hash-checked, the sealed ones from S3
        n = self.read_all(e)
        self.assertEqual(n, len(set(WANT.values())), n)
        self.assertEqual(e.stop(), 0)
        self.check_complete(e, "syncfail/")
        # the open segment's parts are its file's bytes, in order
        rows = db_rows(e.data, "SELECT p.segment, p.offset, p.length, p.key FROM segment_parts p "
                       "JOIN segments s ON s.id = p.segment WHERE s.sealed = 0 ORDER BY p.offset")
        for seg, off, length, key in rows:
            with open(os.path.join(e.data, "packs", "%08d.seg" % seg), "rb") as f:
                f.seek(off)
                self.assertEqual(self.s3.get(BUCKET, "syncfail/" + key), f.read(length), key)


class SharedBucketTest(S3Base):
    def test_two_engines_one_bucket_and_prefix(self):
        a, b = self.engine("shared/"), self.engine("shared/")
        a.start(once=True)
        b.start(once=True)
        self.assertEqual(a.wait(timeout=300), 0, a.log())
        self.assertEqual(b.wait(timeout=300), 0, b.log())
        ida, idb = self.engine_id(a), self.engine_id(b)
        self.assertNotEqual(ida, idb)
        ka = self.s3.keys(BUCKET, "shared/" + ida + "/")
        kb = self.s3.keys(BUCKET, "shared/" + idb + "/")
        self.assertTrue(ka and kb)
        self.assertEqual(sorted(ka + kb), self.s3.keys(BUCKET, "shared/"))
        # a restart of A (its sweep lists and deletes) leaves every one of B's objects
        a.start()
        self.assertEqual(self.read_all(a), len(set(WANT.values())))
        self.assertEqual(a.stop(), 0)
        self.assertEqual(self.s3.keys(BUCKET, "shared/" + idb + "/"), kb)
        b.start()
        self.assertEqual(self.read_all(b), len(set(WANT.values())))
        self.assertEqual(b.stop(), 0)


def segment_files(data):
    """{name: sha256} of the segment files in DATA/packs."""
    d = os.path.join(data, "packs")
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".seg"):
            with open(os.path.join(d, f), "rb") as fh:
                out[f] = hashlib.sha256(fh.read()).hexdigest()
    return out


class MigrateTest(S3Base):
    def storage(self, e, *args, env=None):
        return vault.run("storage", *args, "--data", e.data, "--config", e.config,
                         env=dict(e.env, **(env or {})), timeout=300)

    def test_local_to_s3_to_local_byte_identical_and_resumable(self):
        # an archive in the data folder, with several sealed segments
        e = self.engine("mig/")
        with open(e.config) as f:
            text = f.read()
        os.unlink(e.config)
        e.write_source("work", source_file(port=DC.plain_port, username=DC.user,
                                           password=DC.password, tls="false", fetch_batch=8))
        e.env["EMAILVAULT_SEGMENT_MAX"] = "150000"
        e.start(once=True)
        self.assertEqual(e.wait(timeout=300), 0, e.log())
        before = segment_files(e.data)
        self.assertEqual(archived(e.data)[0], WANT)
        e.write_config(text)
        # the bucket is checked first
        r = self.storage(e, "check")
        self.assertEqual(r.returncode, 0, r.stderr)
        # an interrupted move, then the same command again goes on
        r = self.storage(e, "migrate", "s3", env={"EMAILVAULT_CRASH_AFTER_SEGMENTS": "1"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("stored segment 1", r.stdout)
        r = self.storage(e, "migrate", "s3")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("stored segment 1 ", r.stdout)      # done the first time
        r = self.storage(e, "verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"\b\d+ objects .*: 0 missing")
        # the sealed files gone from the disk: an engine on S3 reads them from there
        def drop_sealed():
            for f in before:
                seg = int(f[:-4])
                if db_rows(e.data, "SELECT sealed FROM segments WHERE id = ?", seg)[0][0]:
                    os.unlink(os.path.join(e.data, "packs", f))
        drop_sealed()
        e.start()
        self.assertEqual(self.read_all(e), len(set(WANT.values())))
        self.assertEqual(e.stop(), 0)
        # an engine without storage = s3 refuses such an archive
        os.unlink(e.config)
        e.start(wait=False)
        self.assertEqual(e.wait(timeout=60), 1)
        self.assertTrue(e.log_has("segments are on S3"), e.log())
        e.write_config(text)
        # back home, fetching what the disk lost: the files are the very bytes they were
        drop_sealed()
        r = self.storage(e, "migrate", "local")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("fetched segment", r.stdout)
        self.assertEqual(segment_files(e.data), before)
        self.assertEqual(db_rows(e.data, "SELECT count(*) FROM segments WHERE object IS NOT NULL"),
                         [(0,)])
        os.unlink(e.config)
        r = vault.run("verify", "--data", e.data, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # a missing object is what verify reports
        e.write_config(text)
        r = self.storage(e, "migrate", "s3")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        key = db_rows(e.data, "SELECT object FROM segments WHERE object IS NOT NULL")[0][0]
        self.s3.delete(BUCKET, "mig/" + key)
        r = self.storage(e, "verify")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("object %s: missing" % key, r.stdout)


class BackupTest(S3Base):
    def test_backup_names_evicted_segments_and_restores_from_s3(self):
        # the cache (size 0) keeps no sealed file: a backup finds them only on S3
        e = self.engine("bk/", env={"EMAILVAULT_INDEXER": "off"})
        e.start(once=True)
        self.assertEqual(e.wait(timeout=300), 0, e.log())
        on_s3 = [seg for (seg,) in db_rows(e.data, "SELECT id FROM segments WHERE object IS NOT NULL")
                 if not os.path.exists(os.path.join(e.data, "packs", "%08d.seg" % seg))]
        self.assertGreaterEqual(len(on_s3), 2)
        out = os.path.join(e.tmp, "backup")
        r = vault.run("backup", "--data", e.data, "--out", out, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("%d sealed segments are only on S3" % len(on_s3), r.stdout)
        with open(os.path.join(out, "BACKUP")) as f:
            self.assertIn("segments_only_on_s3 %d\n" % len(on_s3), f.read())
        # the open segment is copied; the evicted ones are named, not fetched
        for seg in on_s3:
            self.assertFalse(os.path.exists(os.path.join(out, "packs", "%08d.seg" % seg)))
        self.assertEqual(db_rows(out, "SELECT count(*) FROM segments WHERE object IS NOT NULL"),
                         db_rows(e.data, "SELECT count(*) FROM segments WHERE object IS NOT NULL"))
        # restored in place of the original: every message reads back, through S3
        text, senv = storage_config("bk/")
        restored = Engine(log_level="info", env=dict(senv, EMAILVAULT_INDEXER="off"))
        self.engines.append(restored)
        shutil.copytree(out, restored.data)
        os.unlink(os.path.join(restored.data, "BACKUP"))
        restored.write_config(text)
        shutil.copy(os.path.join(e.sources, "work.lua"), restored.sources)
        restored.start()
        self.assertEqual(self.read_all(restored), len(set(WANT.values())))
        self.assertEqual(restored.stop(), 0)


class CheckTest(unittest.TestCase):
    def test_check_validates_storage(self):
        e = Engine()
        try:
            e.write_config('return { storage = s3 { endpoint = "ftp://x", bucket = "Bad_Bucket", '
                           'access_key = "k", secret_key = 1, segment_size = 10, colour = 1 } }\n')
            r = vault.run("check", "--sources", e.sources, "--config", e.config)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            out = r.stdout + r.stderr
            for field in ("storage.endpoint", "storage.bucket", "storage.secret_key",
                          "storage.segment_size", "storage.colour"):
                self.assertIn(field, out)
            e.write_config('return { storage = s3 { endpoint = "http://127.0.0.1:1", '
                           'bucket = "good-bucket", access_key = "k", '
                           'secret_key = secret.env("X") } }\n')
            r = vault.run("check", "--sources", e.sources, "--config", e.config)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        finally:
            e.cleanup()


if __name__ == "__main__":
    unittest.main()
