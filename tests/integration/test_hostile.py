"""A hostile IMAP server (fakeimap + tests/harness/hostile.py) beside a
healthy one in the same engine: garbage, a literal announced as 2^40 bytes,
an endless line, wrong and reused tags, BYE in the middle of a FETCH,
unsolicited EXISTS/EXPUNGE/FETCH during a batch, UIDVALIDITY changing
between EXAMINE and FETCH, a LIST of 100,000 folders, a message that claims
10 bytes and sends 10 MB. Each ends in a clean error on the hostile source
or in correct handling; the healthy source is archived all the same, and the
engine's peak memory (VmHWM) stays bounded."""
import hashlib
import re
import time
import unittest

import hostile
from archivecheck import archived, check_complete, db_rows, peak_rss_kib, sanitized
from fakeimap import FakeImap, message
from vault import Engine, source_file

MIB = 1024
PEAKS = {}          # case -> VmHWM in KiB, printed at the end


def expected(srv):
    out = {}
    for raw, f in srv.folders.items():
        for uid, data, _ in f.messages:
            out[(raw.decode(), uid)] = hashlib.sha256(data).hexdigest()
    return out


class HostileCase(unittest.TestCase):
    BOUND = 64 * MIB      # peak memory allowed above the healthy engine's

    @classmethod
    def setUpClass(cls):
        # The healthy engine's peak, for the bound.
        e = Engine(log_level="info")
        good = FakeImap({"INBOX": [message(i, size=2000) for i in range(1, 21)]})
        try:
            e.write_source("good", source_file(port=good.port, username=good.user, password=good.password,
                                               tls="false"))
            e.start()
            want = expected(good)
            deadline = time.time() + 30
            while archived(e.data, "good")[0] != want and time.time() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            cls.baseline = peak_rss_kib(e.proc.pid)
            cls.asan = sanitized(e.proc.pid)
            PEAKS["healthy engine (baseline)"] = cls.baseline
        finally:
            e.stop()
            e.cleanup()
            good.close()

    @classmethod
    def tearDownClass(cls):
        print("\npeak memory (VmHWM) of the engine per case%s:" %
              (" (AddressSanitizer build: not checked against the bound)" if cls.asan else ""))
        for k, v in PEAKS.items():
            print("  %-48s %7.1f MiB" % (k, v / 1024.0))

    def setUp(self):
        self.e = Engine(log_level="info")
        self.servers = []

    def tearDown(self):
        self.e.cleanup()
        for s in self.servers:
            s.close()

    def server(self, folders):
        s = FakeImap(folders)
        self.servers.append(s)
        return s

    def sources(self, bad, **kw):
        self.good = self.server({"INBOX": [message(i, size=2000) for i in range(1, 21)]})
        for sid, srv, extra in (("good", self.good, {}), ("bad", bad, kw)):
            fields = dict(tls="false", fetch_batch=4, command_timeout=5, connect_timeout=5,
                          on_error="function() return 0.5 end")
            fields.update(extra)
            self.e.write_source(sid, source_file(port=srv.port, username=srv.user, password=srv.password,
                                                 **fields))

    def status(self, sid):
        return self.e.eval("return vault.status('%s')" % sid)

    def run_case(self, name, bad, kind=None, message=None, complete=None, timeout=60, bound=None, **kw):
        """Runs both sources; KIND: the bad one must fail with it (twice: it
        retried); COMPLETE: the bad one's archive must become this."""
        self.sources(bad, **kw)
        e = self.e
        e.start()
        want_good = expected(self.good)
        deadline = time.time() + timeout
        done = False
        while time.time() < deadline and not done:
            good_ok = archived(e.data, "good")[0] == want_good
            if kind:
                fails = e.log_lines(r"\[bad\] source failed")
                done = good_ok and len(fails) >= 2
            else:
                done = good_ok and archived(e.data, "bad")[0] == complete() and \
                    self.status("bad").get("status") == "active"
            time.sleep(0.1)
        peak = peak_rss_kib(e.proc.pid)
        PEAKS[name] = peak
        self.assertTrue(done, e.log()[-4000:])
        self.assertEqual(e.eval("return 1 + 1"), 2)          # still answering
        self.assertEqual(self.status("good")["status"], "active")
        if not self.asan:
            self.assertLess(peak - self.baseline, bound or self.BOUND, "peak %d KiB, healthy %d KiB" % (peak, self.baseline))
        if kind:
            fails = e.log_lines(r"\[bad\] source failed")
            for line in fails[:2]:
                self.assertRegex(line, r" kind=%s\b" % kind)
                if message:
                    self.assertRegex(line, message)
            st = self.status("bad")
            if st["status"] == "error":
                self.assertEqual(st["error"]["kind"], kind)
        e.stop()
        check_complete(self, e.data, want_good, "good")
        if complete is not None:
            check_complete(self, e.data, complete(), "bad")
        return e

    def test_garbage(self):
        bad = self.server({"INBOX": [message(1)]})
        bad.handler = hostile.garbage()
        self.run_case("garbage after LIST", bad, kind="protocol", message="cannot parse")

    def test_literal_of_two_to_the_forty(self):
        bad = self.server({"INBOX": [message(1)]})
        bad.handler = hostile.huge_literal()
        self.run_case("literal of 2^40 bytes", bad, kind="protocol", message="exceeds limit")
        self.assertEqual(archived(self.e.data, "bad")[0], {})

    def test_endless_line(self):
        bad = self.server({"INBOX": [message(1)]})
        bad.handler = hostile.endless_line()
        self.run_case("endless line (64 MiB offered)", bad, kind="protocol", message="exceeds 16777216 bytes")

    def test_wrong_tag(self):
        bad = self.server({"INBOX": [message(1)]})
        bad.handler = hostile.wrong_tag()
        self.run_case("wrong tag", bad, kind="protocol", message="did not send")

    def test_reused_tag(self):
        bad = self.server({"INBOX": [message(1)]})
        bad.handler = hostile.reused_tag()
        self.run_case("reused tag", bad, kind="protocol", message="did not send")

    def test_bye_in_the_middle_of_a_fetch(self):
        bad = self.server({"INBOX": [message(i) for i in range(1, 13)]})
        bad.handler = hostile.bye_mid_fetch()
        e = self.run_case("BYE in a FETCH", bad, complete=lambda: expected(bad))
        fails = e.log_lines(r"\[bad\] source failed")
        self.assertEqual(len(fails), 1, fails)
        self.assertRegex(fails[0], r" kind=protocol\b")
        self.assertIn("shutting down now", fails[0])

    def test_unsolicited_responses_during_a_batch(self):
        bad = self.server({"INBOX": [message(i) for i in range(1, 13)]})
        h = bad.handler = hostile.unsolicited(bad)
        # The expunged message cannot be archived; everything else must be,
        # the mail that arrived during the batch too, and never UID 99999.
        self.sources(bad)
        e = self.e
        e.start()
        deadline = time.time() + 60
        while time.time() < deadline:
            want = expected(bad)
            if h.state["added"] and archived(e.data, "bad")[0] == want and \
                    archived(e.data, "good")[0] == expected(self.good):
                break
            time.sleep(0.1)
        peak = PEAKS["unsolicited EXISTS/EXPUNGE/FETCH"] = peak_rss_kib(e.proc.pid)
        if not self.asan:
            self.assertLess(peak - self.baseline, self.BOUND)
        want = expected(bad)
        self.assertEqual(archived(e.data, "bad")[0], want, e.log()[-3000:])
        self.assertEqual(e.log_lines(r"\[bad\] source failed"), [])
        gone = h.state["expunged"]
        self.assertNotIn(("INBOX", gone), want)
        e.stop()
        check_complete(self, e.data, want, "bad")
        self.assertEqual(db_rows(e.data, "SELECT count(*) FROM locations WHERE uid = 99999")[0][0], 0)
        # the expunged UID is owed or skipped with a reason, not silently dropped
        owed = db_rows(e.data, "SELECT uid FROM pending WHERE source = 'bad' UNION "
                       "SELECT uid FROM skipped WHERE source = 'bad'")
        self.assertIn((gone,), owed)

    def test_uidvalidity_changes_between_examine_and_fetch(self):
        msgs = [message(i) for i in range(1, 9)]
        bad = self.server({"INBOX": msgs})
        before = {uid: hashlib.sha256(m).hexdigest() for uid, m in enumerate(msgs, 1)}
        bad.handler = hostile.uidvalidity_change(bad)
        self.run_case("UIDVALIDITY change during FETCH", bad, complete=lambda: expected(bad))
        # Nothing may be recorded under the old UIDVALIDITY for a UID that
        # named another message then.
        rows = db_rows(self.e.data, "SELECT uid, hash FROM locations WHERE source = 'bad' AND uidvalidity = 1000")
        for uid, h in rows:
            self.assertEqual(h, before[uid], "UID %d at UIDVALIDITY 1000 recorded with another message" % uid)
        self.assertTrue(self.e.log_has(r"\[bad\] .*UIDVALIDITY"))

    def test_list_of_100000_folders(self):
        bad = self.server({"INBOX": [message(i) for i in range(1, 4)]})
        bad.handler = hostile.many_folders(100000)
        # The listing is held as Lua records while the folders are chosen:
        # memory grows with it, about 1 KiB a folder (allowed: 1.5 KiB).
        e = self.run_case("LIST of 100,000 folders", bad, complete=lambda: expected(bad), timeout=120,
                          bound=100000 * 3 // 2, folders='{ include = { "INBOX", "Folder 00000%" } }')
        self.assertTrue(e.log_has(r"\[bad\] folders to archive count=\d+ of=100001"))

    def test_message_claims_10_bytes_and_sends_10_mb(self):
        big = b"Subject: big\r\n\r\n" + b"z" * (10 << 20) + b"\r\n"
        bad = self.server({"INBOX": [message(1), big, message(3)]})
        bad.handler = hostile.size_lie(2, big)
        self.run_case("claims 10 bytes, sends 10 MB", bad, complete=lambda: expected(bad))
        size = db_rows(self.e.data, "SELECT size FROM messages WHERE hash = ?",
                       hashlib.sha256(big).hexdigest())[0][0]
        self.assertEqual(size, len(big))

    def test_literal_of_10_bytes_followed_by_10_mb(self):
        bad = self.server({"INBOX": [message(1), message(2), message(3)]})
        bad.handler = hostile.short_literal_flood(2)
        self.run_case("10-byte literal, then 10 MB", bad, kind="protocol")
        got = archived(self.e.data, "bad")[0]
        self.assertNotIn(("INBOX", 2), got)


if __name__ == "__main__":
    unittest.main(verbosity=2)
