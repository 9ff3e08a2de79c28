"""The engine under network faults: a proxy (tests/harness/faultproxy.py)
between the engine and a real Dovecot closes connections after some bytes
(in a greeting, a listing, a message literal, a TLS record), stalls them
past the timeouts, trickles one byte at a time, resets, refuses, or accepts
and never answers. Each time the source reports the right error kind, backs
off (on_error), reconnects and ends with every server message archived
exactly once and `emailvault verify` passing."""
import os
import re
import time
import unittest

import dovecot
import mailgen
from archivecheck import check_complete, server_state, wait_archived
from faultproxy import Fault, FaultProxy
from vault import Engine, source_file

TIMEOUT = 2            # connect_timeout and command_timeout of the sources here
RETRY = 0.5            # what on_error answers


class FaultCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dc = dovecot.Dovecot().start()
        cls.dc.create_folders(["Archive"])
        box = mailgen.build_mailbox({"INBOX": 10, "Archive": 6}, seed=5, duplicates=2, max_size=9000)
        cls.dc.fill(box)

    @classmethod
    def tearDownClass(cls):
        cls.dc.stop()

    def setUp(self):
        self.e = Engine()
        self.proxy = None
        self.want = server_state(self.dc)

    def tearDown(self):
        self.e.cleanup()
        if self.proxy:
            self.proxy.close()

    def start(self, tls=False, poll=None, **extra):
        dc = self.dc
        self.proxy = FaultProxy("127.0.0.1", dc.tls_port if tls else dc.plain_port)
        fields = dict(fetch_batch=3, pipeline=2, connect_timeout=TIMEOUT, command_timeout=TIMEOUT,
                      on_error="function(err, attempt) return %s end" % RETRY)
        if tls:
            fields.update(tls="true", ca_file='"%s"' % dc.cert_path)
        else:
            fields.update(tls="false")
        if poll:
            fields["poll"] = poll
        fields.update(extra)
        self.e.write_source("src", source_file(port=self.proxy.port, username=dc.user,
                                               password=dc.password, **fields))
        return self.proxy

    def failures(self):
        """(kind, message) of each 'source failed' line."""
        out = []
        for line in self.e.log_lines(r"\[src\] source failed"):
            k = re.search(r" kind=(\w+)", line)
            m = re.search(r" error=\"((?:[^\"\\]|\\.)*)\"", line)
            out.append((k.group(1) if k else None, m.group(1) if m else line))
        return out

    def run_until_complete(self, kind, message=None, timeout=60, after_start=None, sessions=2):
        """Starts the engine, waits for the archive to be complete; checks
        the failure's kind in the status and the log, and the reconnect."""
        e = self.e
        e.start()
        if after_start:
            after_start()
        seen = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = e.eval("return vault.status('src')")
            if st.get("status") == "error" and st.get("error"):
                seen.append(st["error"]["kind"])
            if st.get("status") == "active" and wait_archived(e.data, self.want, timeout=0) == self.want:
                break
            time.sleep(0.05)
        got = wait_archived(e.data, self.want, timeout=1)
        fails = self.failures()
        self.assertEqual(got, self.want, "archive incomplete; failures %r\n%s" % (fails, e.log()[-3000:]))
        self.assertTrue(fails, "the fault caused no failure")
        self.assertEqual(fails[0][0], kind, fails)
        if message:
            self.assertRegex(fails[0][1], message)
        if seen:
            self.assertEqual(seen[0], kind)
        self.assertTrue(e.log_has(r"\[src\] source failed .*attempt=1 .*retry_in=\d+s"))
        self.assertGreaterEqual(self.proxy.accepted, sessions, "no reconnect")
        e.stop()
        check_complete(self, e.data, self.want, "src")
        self.assertEqual(self.dc.seen_count(), 0)
        return fails

    # -- closed after some bytes ----------------------------------------
    def test_close_in_the_greeting(self):
        self.start().script(Fault("close", after=7))
        self.run_until_complete("protocol", "closed the connection unexpectedly")

    def test_close_in_the_listing(self):
        self.start().script(Fault("close", marker=b'* LIST (', extra=4))
        self.run_until_complete("protocol", "closed the connection unexpectedly")

    def test_close_in_a_message_literal(self):
        p = self.start()
        p.script(Fault("close", marker=b"BODY[] {", extra=1500))
        self.run_until_complete("protocol", "closed the connection unexpectedly")
        self.assertTrue(p.events("cut"))

    def test_close_far_into_the_import(self):
        # 40 kB in: several batches have committed by then
        p = self.start()
        p.script(Fault("close", after=40000))
        self.run_until_complete("protocol", "closed the connection unexpectedly")
        self.assertTrue(p.events("cut"))

    def test_close_in_a_tls_record_of_the_handshake(self):
        p = self.start(tls=True)
        p.script(Fault("close", tls_after=0, tls_offset=20))
        self.run_until_complete("tls")
        self.assertIsNotNone(p.cuts[0][3], "the cut was not inside a TLS record")

    def test_close_in_a_tls_record_of_a_message(self):
        p = self.start(tls=True)
        p.script(Fault("close", tls_after=12000, tls_offset=700))
        self.run_until_complete("protocol", "closed the connection unexpectedly")
        start, length = p.cuts[0][3]
        self.assertGreater(length, 700)

    # -- stalled --------------------------------------------------------
    def test_stall_in_a_message_is_a_read_timeout(self):
        p = self.start()
        p.script(Fault("stall", marker=b"BODY[] {", extra=800, seconds=60))
        t0 = time.time()
        self.run_until_complete("timeout", "did not answer for %d seconds" % TIMEOUT)
        self.assertLess(time.time() - t0, 40)

    def test_stall_in_the_greeting_is_a_connect_timeout(self):
        self.start().script(Fault("stall", after=5, seconds=60))
        self.run_until_complete("timeout", "did not complete the IMAP greeting and login")

    def test_stall_in_the_tls_handshake(self):
        self.start(tls=True).script(Fault("stall", tls_after=0, tls_offset=30, seconds=60))
        self.run_until_complete("timeout", "TLS handshake")

    def test_trickle_is_not_a_timeout(self):
        # Every byte alone, the whole session taking several times the
        # timeout: only silence counts, so nothing fails.
        p = self.start()
        p.script(Fault("trickle", delay=0.00005))
        e = self.e
        t0 = time.time()
        e.start()
        got = wait_archived(e.data, self.want, timeout=120, proc=e.proc)
        took = time.time() - t0
        self.assertEqual(got, self.want, e.log()[-3000:])
        self.assertEqual(self.failures(), [])
        self.assertEqual(p.accepted, 1)
        self.assertGreater(took, 2 * TIMEOUT, "the trickle was too fast to prove anything")
        e.stop()
        check_complete(self, e.data, self.want, "src")

    # -- refused, reset, silent -----------------------------------------
    def test_reset_on_connect(self):
        self.start().script(Fault("reset"), Fault("reset"))
        fails = self.run_until_complete("protocol", "reset")
        self.assertGreaterEqual(len(fails), 2)
        self.assertTrue(self.e.log_has(r"source failed .*attempt=2"))

    def test_refused(self):
        p = self.start()
        p.refuse()

        def refused_twice():
            self.e.wait_for_log(r"\[src\] source failed .*kind=refused", timeout=20, count=2)
            p.listen()
        self.run_until_complete("refused", "refused", after_start=refused_twice, sessions=1)

    def test_accept_and_never_answer(self):
        self.start().script(Fault("blackhole"))
        t0 = time.time()
        self.run_until_complete("timeout", "did not complete the IMAP greeting")
        self.assertLess(time.time() - t0, 40)

    # -- IDLE -----------------------------------------------------------
    def test_server_silent_during_idle(self):
        """IDLE may be silent for long (no read timeout while it waits), but
        it has its own deadline: a server gone silent is noticed at the
        latest when IDLE is renewed (poll) plus the command timeout."""
        POLL = 10
        p = self.start(poll=POLL)
        e = self.e
        e.start()
        self.assertEqual(wait_archived(e.data, self.want, timeout=60), self.want, e.log()[-3000:])
        e.wait_for_log(r"\[src\] .*status from=importing to=active", timeout=20)
        # Silence longer than the command timeout while idling is no error.
        time.sleep(2 * TIMEOUT + 1)
        self.assertEqual(self.failures(), [])
        p.stall_open()
        t0 = time.time()
        uid = self.dc.deliver("INBOX", mailgen.MailGen(seed=99).message(size=3000))
        e.wait_for_log(r"\[src\] source failed .*kind=timeout", timeout=POLL + TIMEOUT + 10)
        took = time.time() - t0
        self.assertLess(took, POLL + TIMEOUT + 5)
        p.frozen.clear()
        want = server_state(self.dc)
        self.assertIn(("INBOX", uid), want)
        self.assertEqual(wait_archived(e.data, want, timeout=30), want, e.log()[-3000:])
        e.stop()
        check_complete(self, e.data, want, "src")


if __name__ == "__main__":
    unittest.main(verbosity=2)
