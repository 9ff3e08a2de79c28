"""The archive and the sync engine against a real Dovecot: the import,
byte-exact blobs, continuous sync, statuses, pause, UIDVALIDITY changes,
filters and retry, through the real binary."""
import hashlib
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import time
import unittest

import dovecot
import archivecheck
import mailgen
import vault
from vault import Engine, source_file


def archive_state(data):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "archive.db"), uri=True)
    try:
        locs = db.execute("SELECT source, folder, uidvalidity, uid, hash FROM locations").fetchall()
        msgs = dict(db.execute("SELECT hash, size FROM messages").fetchall())
        skipped = db.execute("SELECT source, folder, uid FROM skipped").fetchall()
        return locs, msgs, skipped
    finally:
        db.close()


def check_blobs(testcase, data, hashes):
    """Every message's bytes, read back from the store, hash to its id; the
    store's files are 0600."""
    stored = archivecheck.stored_messages(data)
    testcase.assertEqual(set(stored), set(hashes))
    archivecheck.check_modes(testcase, data)


class SyncTest(unittest.TestCase):
    def setUp(self):
        self.d = dovecot.Dovecot().start()
        self.e = Engine()

    def tearDown(self):
        try:
            self.assertEqual(self.d.seen_count(), 0, "a message got \\Seen")
        finally:
            self.e.cleanup()
            self.d.stop()

    def src(self, **kw):
        args = dict(port=self.d.tls_port, username=self.d.user, password=self.d.password,
                    ca_file='"%s"' % self.d.cert_path, poll=10)
        args.update(kw)
        return source_file(**args)

    def server_hashes(self):
        out = {}
        for folder in self.d.folder_names():
            for uid, raw in self.d.server_messages(folder):
                out[(folder, uid)] = hashlib.sha256(raw).hexdigest()
        return out

    def wait_for(self, cond, timeout=60, what="condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(0.2)
        raise AssertionError("timed out waiting for " + what + "\n" + self.e.log()[-3000:])

    def status(self, sid):
        return self.e.eval("return vault.status(%r)" % sid)

    def test_import_then_follow(self):
        spec = {"INBOX": 1200, "Archive/2023": 500, "Archive/2023/Q1": 200, "Entwürfe": 40, "Sent": 60}
        box = mailgen.build_mailbox(spec, seed=3, duplicates=25)
        self.d.create_folders([f for f in spec if f != "INBOX"])
        self.d.fill(box)
        want = self.server_hashes()
        self.e.write_source("work", self.src(fetch_batch=50, pipeline=3))
        self.e.start()
        self.wait_for(lambda: self.status("work")["status"] == "active", 180, "active")
        locs, msgs, _ = archive_state(self.e.data)
        got = {(f, uid): h for (_, f, _, uid, h) in locs}
        self.assertEqual(got, want)
        self.assertEqual(len(msgs), len(set(want.values())))      # each content once
        check_blobs(self, self.e.data, set(want.values()))
        self.e.wait_for_log(r"\[work\] status .*from=importing .*to=active|\[work\] status .*to=active")
        st = self.status("work")
        self.assertEqual(st["archived"], len(want))
        self.assertEqual(st["folders"]["Entwürfe"]["archived"], 40)
        self.assertEqual(st["folders"]["INBOX"]["on_server"], 1200)
        # vault.on: Lua hears about each archived message
        self.e.eval('vault.on("message", function(m) vault.log.info("heard message", '
                    '{folder = m.folder, uid = m.uid, kept = tostring(m.kept)}) end) return true')
        stats = self.e.eval("return vault.stats()")
        self.assertEqual(stats["messages"], len(want))
        self.assertEqual(stats["unique_blobs"], len(set(want.values())))
        self.assertGreater(stats["dedup_saving"], 0)

        # new mail while active: archived within 5 s
        raw = mailgen.MailGen(seed=1234).message(size=5000)
        t0 = time.time()
        self.d.deliver("INBOX", raw)
        h = hashlib.sha256(self.d.server_messages("INBOX")[-1][1]).hexdigest()
        self.wait_for(lambda: any(l[4] == h for l in archive_state(self.e.data)[0]), 10,
                      "new message")
        self.assertLess(time.time() - t0, 5.5)
        self.e.wait_for_log(r"heard message folder=INBOX kept=true uid=1201")

        # status from the CLI, with the engine running and without it
        r = vault.run("status", "--data", self.e.data)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"work\s+work\s+active\s+2001")
        self.assertEqual(self.e.stop(), 0)
        r = vault.run("status", "--data", self.e.data, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        rec = json.loads(r.stdout)[0]
        self.assertEqual((rec["id"], rec["status"], rec["archived"]), ("work", "active", 2001))

    def test_pause_survives_restart_and_sync_now(self):
        self.d.fill({"INBOX": 20})
        self.e.write_source("work", self.src(poll=60))
        self.e.start()
        self.wait_for(lambda: self.status("work")["status"] == "active", 60, "active")
        r = vault.run("pause", "--data", self.e.data, "work")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.status("work")["status"], "paused")
        self.assertEqual(self.e.stop(), 0)
        self.d.fill({"INBOX": 5}, seed=9)
        self.e.start()
        time.sleep(2)
        self.assertEqual(self.status("work")["status"], "paused")
        self.assertEqual(len(archive_state(self.e.data)[0]), 20)
        r = vault.run("resume", "--data", self.e.data, "work")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.wait_for(lambda: len(archive_state(self.e.data)[0]) == 25, 30, "catch-up after resume")
        self.assertEqual(self.status("work")["status"], "active")
        # sync now: a message in a folder other than INBOX (polled every 60 s)
        # is found at once
        self.d.deliver("Sent", mailgen.MailGen(seed=77).message(size=2000))
        time.sleep(0.5)
        t0 = time.time()
        r = vault.run("sync", "--data", self.e.data, "work")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.wait_for(lambda: len(archive_state(self.e.data)[0]) == 26, 10, "sync now")
        self.assertLess(time.time() - t0, 5)

    def test_recreated_folder_adds_no_duplicates(self):
        self.d.create_folder("Box")
        box = mailgen.build_mailbox({"Box": 30}, seed=5, duplicates=0)
        self.d.fill(box)
        self.e.write_source("work", self.src())
        self.e.start(once=True)
        self.assertEqual(self.e.wait(120), 0, self.e.log()[-2000:])
        old, new = self.d.recreate_folder("Box")
        self.assertNotEqual(old, new)
        self.d.fill(box)          # the same 30 messages again
        self.e.start(once=True)
        self.assertEqual(self.e.wait(120), 0, self.e.log()[-2000:])
        locs, msgs, _ = archive_state(self.e.data)
        self.assertEqual(len([l for l in locs if l[1] == "Box" and l[2] == new]), 30)
        self.assertEqual(len(msgs), 30)                  # blobs/messages not doubled
        self.assertIn("UIDVALIDITY changed", self.e.log())

    def test_unchanged_folders_are_not_examined(self):
        # A later pass asks STATUS of every folder at once and EXAMINEs only
        # those where something happened: new mail, an expunge, a new
        # UIDVALIDITY. What it skips must still be reconciled.
        for f in ("Box", "Other", "Renewed"):
            self.d.create_folder(f)
        self.d.fill(mailgen.build_mailbox({"INBOX": 5, "Box": 5, "Other": 5, "Renewed": 5},
                                          seed=8, duplicates=0))
        self.e.write_source("work", self.src())
        self.e.start(once=True)
        self.assertEqual(self.e.wait(120), 0, self.e.log()[-2000:])
        gen = mailgen.MailGen(seed=9)
        self.d.deliver("Box", gen.message())                        # new mail
        self.d.doveadm(("expunge", "mailbox", "Other", "uid", "1"), user=self.d.user)  # one gone
        self.d.recreate_folder("Renewed")                            # new UIDVALIDITY
        self.d.fill({"Renewed": [gen.message()]})
        mark = len(self.e.log())
        self.e.start(once=True)
        self.assertEqual(self.e.wait(120), 0, self.e.log()[-2000:])
        log = self.e.log()[mark:]
        ours = {"INBOX", "Box", "Other", "Renewed"}   # beside Dovecot's empty special folders
        unchanged = set(re.findall(r'folder unchanged folder=(\S+)', log)) & ours
        self.assertEqual(unchanged, {"INBOX"}, log[-3000:])
        locs, _, _ = archive_state(self.e.data)
        self.assertEqual(set((l[1], l[3]) for l in locs if l[1] == "Box"),
                         set(("Box", u) for u in range(1, 7)))
        self.assertIn("UIDVALIDITY changed", log)
        db = sqlite3.connect(os.path.join(self.e.data, "archive.db"))
        on_server = {n: c for n, c in db.execute("SELECT name, on_server FROM folders WHERE "
                                                 "source = 'work'") if n in ours}
        db.close()
        self.assertEqual(on_server, {"INBOX": 5, "Box": 6, "Other": 4, "Renewed": 1})
        self.assertNotIn("shortfall", log)
        # and a pass with nothing new EXAMINEs nothing
        mark = len(self.e.log())
        self.e.start(once=True)
        self.assertEqual(self.e.wait(120), 0, self.e.log()[-2000:])
        log = self.e.log()[mark:]
        self.assertEqual(set(re.findall(r'folder unchanged folder=(\S+)', log)) & ours, ours,
                         log[-3000:])

    def test_filter_skips_are_counted(self):
        self.d.fill({"INBOX": 30})
        self.e.write_source("work", self.src(filter="function(msg) if msg.uid % 3 == 0 then "
                                              "return false, 'every third' end return msg.size > 0 "
                                              "and msg.subject ~= nil and msg:header('Message-ID') ~= nil end"))
        self.e.start(once=True)
        self.assertEqual(self.e.wait(120), 0, self.e.log()[-3000:])
        locs, _, skipped = archive_state(self.e.data)
        self.assertEqual(len(skipped), 10)
        self.assertEqual(len(locs), 20)
        self.assertTrue(all(uid % 3 == 0 for (_, _, uid) in skipped))
        r = vault.run("status", "--data", self.e.data, "--json")
        rec = json.loads(r.stdout)[0]
        self.assertEqual(rec["skipped"], 10)
        self.assertEqual(rec["folders"]["INBOX"]["skipped"], 10)

    def test_hook_error_sets_source_to_error_others_carry_on(self):
        self.d.fill({"INBOX": 5})
        self.e.write_source("bad", self.src(filter="function(msg) error('filter broke') end"))
        self.e.write_source("good", self.src())
        self.e.start(once=True)
        self.assertEqual(self.e.wait(120), 1)
        r = vault.run("status", "--data", self.e.data, "--json")
        recs = {x["id"]: x for x in json.loads(r.stdout)}
        self.assertEqual(recs["bad"]["status"], "error")
        self.assertEqual(recs["bad"]["error"]["kind"], "hook")
        self.assertIn("filter broke", recs["bad"]["error"]["message"])
        self.assertEqual(recs["good"]["archived"], 5)

    def test_runaway_filters_fail_their_sources_others_carry_on(self):
        # Issue 8: a filter that catches its budget's error, and one stuck in
        # a pattern that backtracks (time inside C), froze the whole engine.
        self.d.fill({"INBOX": 40})
        self.e.write_source("loop", self.src(
            filter="function(msg) while true do pcall(function() while true do end end) end end"))
        self.e.write_source("regex", self.src(
            filter="function(msg) return not string.find(('a'):rep(3000), ('a-'):rep(8) .. 'b') end"))
        self.e.write_source("good", self.src())
        self.e.start()
        slowest = 0
        deadline = time.time() + 90
        while time.time() < deadline:
            t0 = time.time()
            recs = {r["id"]: r for r in self.e.eval("return vault.sources()", timeout=30)}
            slowest = max(slowest, time.time() - t0)
            done = (recs["good"].get("archived") == 40 and
                    all(recs[s]["status"] == "error" for s in ("loop", "regex")))
            if done:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("timed out:\n" + self.e.log()[-3000:])
        self.assertLess(slowest, 5, "eval was slow while the hooks ran")
        for sid in ("loop", "regex"):
            err = recs[sid]["error"]
            self.assertEqual(err["kind"], "hook", err)
            self.assertRegex(err["message"], r"filter failed on INBOX UID 1: .*"
                             r"(instruction budget exceeded|time limit exceeded)")
        self.assertFalse([l for l in archive_state(self.e.data)[0] if l[0] != "good"])
        t0 = time.time()
        self.e.signal(signal.SIGTERM)
        self.assertEqual(self.e.wait(15), 0)
        self.assertLess(time.time() - t0, 10)

    def test_hook_pausing_its_own_source_mid_import(self):
        self.d.fill({"INBOX": 60})
        self.e.start()
        # the handler is in place before the source exists
        self.e.eval('vault.on("message", function(m) if m.uid == 15 then vault.pause("work") end end) return 1')
        self.e.write_source("work", self.src(fetch_batch=10))
        self.e.reload()
        self.wait_for(lambda: self.status("work")["status"] == "paused", 30, "paused")
        self.assertLess(len(archive_state(self.e.data)[0]), 60)
        self.assertEqual(self.e.eval("return 'alive'"), "alive")
        self.e.eval('vault.resume("work") return 1')
        self.wait_for(lambda: len(archive_state(self.e.data)[0]) == 60, 30, "all after resume")

    def test_verify_finds_missing_and_corrupt_blobs(self):
        # small messages are read whole, ones over 1 MiB as a stream
        gen = mailgen.MailGen(seed=78)
        self.d.fill({"INBOX": [m for m in gen.messages(12)] + [gen.message(size=3 << 20),
                                                                gen.message(size=2 << 20)]})
        self.e.write_source("work", self.src())
        self.e.start(once=True)
        self.assertEqual(self.e.wait(60), 0)
        r = vault.run("verify", "--data", self.e.data)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("14 messages checked", r.stdout)
        self.assertIn("0 missing, 0 corrupt", r.stdout)
        _, msgs, _ = archive_state(self.e.data)
        sizes = dict(archivecheck.db_rows(self.e.data, "SELECT hash, size FROM messages"))
        lost = archivecheck.last_stored(self.e.data)
        self.assertGreater(sizes[lost], 1 << 20)
        small = sorted(h for h in msgs if sizes[h] < 1 << 20)[0]
        big = [h for h in msgs if sizes[h] > 1 << 20 and h != lost][0]
        archivecheck.cut_message(self.e.data, lost)       # its bytes gone
        archivecheck.corrupt_message(self.e.data, small)  # one flipped byte
        archivecheck.corrupt_message(self.e.data, big)
        r = vault.run("verify", "--data", self.e.data)
        self.assertEqual(r.returncode, 1)
        self.assertIn("missing %s: its segment ends before it" % lost, r.stdout)
        self.assertIn("corrupt %s" % small, r.stdout)
        self.assertIn("corrupt %s" % big, r.stdout)
        self.assertIn("1 missing, 2 corrupt", r.stdout)
        self.assertIn("1 damaged", r.stdout)    # the segment is shorter than committed
        # the engine still starts (a new segment) and archives new mail
        self.d.deliver("INBOX", mailgen.MailGen(seed=77).message(size=3000))
        self.e.start(once=True)
        self.assertEqual(self.e.wait(60), 0)
        self.assertTrue(self.e.log_has("messages at its end are lost"), self.e.log())
        self.assertEqual(len(archive_state(self.e.data)[1]), 15)

    def test_shortfall_is_an_error_event(self):
        self.d.fill({"INBOX": 10})
        self.e.write_source("work", self.src())
        self.e.start(once=True)
        self.assertEqual(self.e.wait(60), 0)
        # lose two records behind the engine's back: the next pass must say so
        db = sqlite3.connect(os.path.join(self.e.data, "archive.db"))
        db.execute("DELETE FROM locations WHERE uid IN (3, 4)")
        db.commit()
        db.close()
        self.e.start(once=True)
        self.e.wait(60)
        self.assertRegex(self.e.log(), r"ERROR \[work\] reconciliation shortfall archived=8 folder=INBOX on_server=10")
        db = sqlite3.connect(os.path.join(self.e.data, "archive.db"))
        kinds = [k for (k,) in db.execute("SELECT kind FROM events WHERE source = 'work'")]
        db.close()
        self.assertIn("shortfall", kinds)

    def test_once_exit_codes(self):
        self.d.fill({"INBOX": 3})
        self.e.write_source("good", self.src())
        self.e.start(once=True)
        self.assertEqual(self.e.wait(60), 0)
        self.e.write_source("auth", self.src(password="wrong"))
        self.e.start(once=True)
        self.assertEqual(self.e.wait(60), 1)


class CrashTest(unittest.TestCase):
    """Kill the engine at many points of an import; every restart must end
    with a complete archive: no loss, no duplicate, every blob intact."""

    def test_abort_at_many_points(self):
        d = dovecot.Dovecot().start()
        try:
            d.create_folders(["A", "B"])
            box = mailgen.build_mailbox({"INBOX": 60, "A": 40, "B": 20}, seed=11, duplicates=8,
                                        max_size=40000)
            d.fill(box)
            want = {}
            for folder in d.folder_names():
                for uid, raw in d.server_messages(folder):
                    want[(folder, uid)] = hashlib.sha256(raw).hexdigest()
            points = [("EMAILVAULT_CRASH_AFTER_BATCHES", n) for n in (1, 2, 3, 5, 8)] + \
                     [("EMAILVAULT_CRASH_AFTER_BLOBS", n) for n in (1, 7, 13, 40, 77)]
            for var, n in points:
                with self.subTest(point="%s=%d" % (var, n)):
                    e = Engine(env={var: str(n)})
                    try:
                        e.write_source("work", source_file(port=d.tls_port, username=d.user,
                                                           password=d.password,
                                                           ca_file='"%s"' % d.cert_path,
                                                           fetch_batch=10, pipeline=2))
                        e.start(once=True)
                        rc = e.wait(120)
                        self.assertNotEqual(rc, 0, "the crash did not happen")
                        e.env.pop(var)
                        e.start(once=True)
                        self.assertEqual(e.wait(120), 0, e.log()[-2000:])
                        locs, msgs, _ = archive_state(e.data)
                        got = {(f, uid): h for (_, f, _, uid, h) in locs}
                        self.assertEqual(got, want)
                        self.assertEqual(len(locs), len(want))
                        self.assertEqual(set(msgs), set(want.values()))
                        check_blobs(self, e.data, set(want.values()))
                        self.assertEqual(os.listdir(os.path.join(e.data, "packs", "spool")), [])
                        r = vault.run("verify", "--data", e.data)
                        self.assertEqual(r.returncode, 0, r.stdout)
                    finally:
                        e.cleanup()
            self.assertEqual(d.seen_count(), 0)
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
