"""Checks the real-IMAP-server harness itself (tests/harness/dovecot.py, mailgen.py).

Run: PYTHONPATH=tests/harness python3 -u tests/integration/test_harness_dovecot.py
Does not need the engine binary.
"""

import hashlib
import imaplib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "harness"))

import dovecot  # noqa: E402
import mailgen  # noqa: E402
from dovecot import Dovecot, imap_utf7_decode, imap_utf7_encode, quote_mailbox  # noqa: E402

FILL_SPEC = {"INBOX": 900, "Archive/2023": 500, "Archive/2023/Q1": 250,
             "Entw\u00fcrfe": 150, "Sent": 200}          # 2000 messages
TIMINGS = {}


def list_names(conn):
    """{decoded name: attributes} from LIST "" "*"."""
    typ, data = conn.list('""', "*")
    assert typ == "OK", data
    out = {}
    for line in data:
        m = re.match(rb'\(([^)]*)\) (?:"[^"]*"|NIL) (.*)$', line)
        assert m, line
        name = m.group(2).decode("ascii")
        if name.startswith('"'):
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[name] = m.group(1).decode("ascii").split()
    return out


class TimedCase(unittest.TestCase):
    def setUp(self):
        self._t0 = time.monotonic()

    def tearDown(self):
        TIMINGS[self._testMethodName[5:]] = time.monotonic() - self._t0


class HarnessTest(TimedCase):
    @classmethod
    def setUpClass(cls):
        t0 = time.monotonic()
        cls.dc = Dovecot(users={"alice": "alice-secret-1", "bob": "bob-pw"})
        cls.dc.start()
        TIMINGS["start"] = time.monotonic() - t0
        t0 = time.monotonic()
        cls.box = mailgen.build_mailbox(FILL_SPEC, seed=7, duplicates=15)
        TIMINGS["generate 2000"] = time.monotonic() - t0
        TIMINGS["generated_MB"] = sum(len(m) for v in cls.box.values() for m in v) / 1e6
        t0 = time.monotonic()
        cls.added = cls.dc.fill(cls.box)
        TIMINGS["fill 2000"] = time.monotonic() - t0

    @classmethod
    def tearDownClass(cls):
        t0 = time.monotonic()
        cls.dc.stop()
        TIMINGS["stop"] = time.monotonic() - t0

    # -- connections --------------------------------------------------------------------

    def test_implicit_tls_verifies_generated_cert(self):
        dc = self.dc
        ctx = ssl.create_default_context(cafile=dc.cert_path)
        conn = imaplib.IMAP4_SSL(dc.host, dc.tls_port, ssl_context=ctx, timeout=20)
        try:
            der = conn.sock.getpeercert(binary_form=True)
            self.assertEqual(hashlib.sha256(der).hexdigest(), dc.cert_sha256)
            self.assertEqual(len(dc.cert_sha256_colons), 95)
            conn.login(dc.user, dc.password)
            self.assertEqual(conn.select("INBOX", readonly=True)[0], "OK")
        finally:
            conn.logout()
        # A client that trusts only the system CAs must refuse the self-signed cert.
        with self.assertRaises(ssl.SSLCertVerificationError):
            imaplib.IMAP4_SSL(dc.host, dc.tls_port, ssl_context=ssl.create_default_context(),
                              timeout=20)

    def test_starttls_on_plain_port(self):
        conn = self.dc.connect("plain", login=False)
        try:
            self.assertIn("STARTTLS", conn.capabilities)
            conn.starttls(ssl_context=self.dc.ssl_context())
            self.assertIsInstance(conn.sock, ssl.SSLSocket)
            self.assertIn(conn.sock.version(), ("TLSv1.2", "TLSv1.3"))
            conn.login(self.dc.user, self.dc.password)
            self.assertEqual(conn.noop()[0], "OK")
        finally:
            conn.logout()

    def test_plaintext_login_on_plain_port(self):
        conn = imaplib.IMAP4(self.dc.host, self.dc.plain_port, timeout=20)
        try:
            self.assertNotIn("LOGINDISABLED", conn.capabilities)
            typ, _ = conn.login("bob", "bob-pw")
            self.assertEqual(typ, "OK")
        finally:
            conn.logout()

    def test_wrong_password_rejected(self):
        t0 = time.monotonic()
        with self.assertRaises(imaplib.IMAP4.error):
            self.dc.connect("tls", password="wrong")
        self.assertLess(time.monotonic() - t0, 5)

    def test_tls_below_1_2_refused(self):
        ctx = self.dc.ssl_context()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        with self.assertRaises((ssl.SSLError, OSError)):
            imaplib.IMAP4_SSL(self.dc.host, self.dc.tls_port, ssl_context=ctx, timeout=20)
        # refused by the server (ssl_min_protocol), not merely by the client library
        deadline = time.monotonic() + 3
        while "unsupported protocol" not in self.dc.log_tail(50) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("unsupported protocol", self.dc.log_tail(50))
        self.assertEqual(self.dc.doveadm("config", "-h", "ssl_min_protocol").strip(), "TLSv1.2")

    # -- folders --------------------------------------------------------------------------

    def test_utf7(self):
        self.assertEqual(imap_utf7_encode("Entw\u00fcrfe"), "Entw&APw-rfe")
        self.assertEqual(imap_utf7_encode("A&B"), "A&-B")
        for name in ["Entw\u00fcrfe", "A&B", "\u65e5\u672c\u8a9e/\U0001F600 x", "plain", "~-&"]:
            self.assertEqual(imap_utf7_decode(imap_utf7_encode(name)), name)

    def test_list_nested_special_use_and_utf7(self):
        self.dc.create_folder("Projekte/\u00dcbersicht/2024")
        conn = self.dc.connect("tls")
        try:
            names = list_names(conn)
            typ, data = conn.list('""', '"*"')
            raw = b"\n".join(data)
        finally:
            conn.logout()
        for n in ["INBOX", "Archive", "Archive/2023", "Archive/2023/Q1", "Entw&APw-rfe",
                  "Projekte/&ANw-bersicht/2024"]:
            self.assertIn(n, names)
        self.assertIn(b"Entw&APw-rfe", raw)
        self.assertNotIn("Entw\u00fcrfe".encode("utf-8"), raw)
        self.assertIn("\\HasChildren", names["Archive/2023"])
        for folder, use in dovecot.SPECIAL_USE.items():
            self.assertIn(use, names[folder], folder)
        self.assertIn("Entw\u00fcrfe", self.dc.folder_names())
        self.assertIn("Projekte/\u00dcbersicht/2024", self.dc.folder_names())

    def test_recreate_changes_uidvalidity(self):
        name = "Recreate/\u00e9t\u00e9"
        self.dc.fill({name: 5})
        old, new = self.dc.recreate_folder(name)
        self.assertNotEqual(old, new)
        self.assertEqual(self.dc.uidvalidity(name), new)
        self.assertEqual(self.dc.message_count(name), 0)
        conn = self.dc.connect("tls")
        try:
            typ, data = conn.status(quote_mailbox(name), "(UIDVALIDITY MESSAGES)")
            self.assertEqual(typ, "OK")
            self.assertIn(b"UIDVALIDITY %d" % new, data[0])
        finally:
            conn.logout()

    # -- messages -------------------------------------------------------------------------

    def test_fill_and_server_messages_match(self):
        self.assertEqual(self.added, FILL_SPEC)
        t0 = time.monotonic()
        total = 0
        for folder, msgs in self.box.items():
            served = self.dc.server_messages(folder)
            self.assertEqual(len(served), FILL_SPEC[folder], folder)
            uids = [u for u, _ in served]
            self.assertEqual(uids, sorted(set(uids)))
            # mailgen writes CRLF, so the server serves exactly the generated bytes, in order
            self.assertEqual([raw for _, raw in served], msgs, folder)
            total += len(served)
        TIMINGS["server_messages 2000"] = time.monotonic() - t0
        self.assertEqual(total, 2000)
        self.assertEqual(self.dc.total_count(), 2000 + self._extra_alice())
        distinct = {hashlib.sha256(m).hexdigest() for v in self.box.values() for m in v}
        self.assertEqual(len(distinct), mailgen.unique_count(self.box))
        self.assertLess(len(distinct), 2000)  # cross-folder duplicates exist
        # EXAMINE + BODY.PEEK[] must not mark anything \Seen
        self.assertEqual(self.dc.seen_count(), 0)

    def _extra_alice(self):
        # messages other tests may have put into alice's account meanwhile
        n = 0
        for f in self.dc.folder_names():
            if f.startswith("Recreate/"):
                try:
                    n += self.dc.message_count(f)
                except dovecot.DovecotError:
                    pass
        return n

    def test_deliver_with_flags_and_bare_lf(self):
        # bob's account, so alice's counts stay untouched
        raw = mailgen.bare_lf_message(3)
        uid1 = self.dc.deliver("INBOX", raw, user="bob")
        uid2 = self.dc.deliver("Stuff/\u00c4rger", b"Subject: hi\r\n\r\nbody\r\n",
                               flags=("\\Seen", "$Label1"), user="bob")
        self.assertEqual(self.dc.seen_count(user="bob"), 1)
        served = self.dc.server_messages("INBOX", user="bob")
        self.assertEqual(served, [(uid1, raw.replace(b"\n", b"\r\n"))])
        conn = self.dc.connect("tls", user="bob")
        try:
            conn.select(quote_mailbox("Stuff/\u00c4rger"), readonly=True)
            typ, data = conn.uid("FETCH", str(uid2), "(FLAGS)")
            self.assertIn(b"\\Seen", data[0])
            self.assertIn(b"$Label1", data[0])
        finally:
            conn.logout()

    def test_doveadm_passthrough(self):
        out = self.dc.doveadm("mailbox", "list", "-u", "bob")
        self.assertIn("INBOX", out)
        with self.assertRaises(dovecot.DovecotError):
            self.dc.doveadm("mailbox", "status", "-u", "bob", "messages", "NoSuchFolder")


class LifecycleTest(TimedCase):
    def test_awkward_password(self):
        with Dovecot(password=dovecot.AWKWARD_PASSWORD) as dc:
            self.assertEqual(dc.password, 'p"a\\ss w\u00f6rd')
            for mode in ("tls", "starttls", "plain"):
                conn = dc.connect(mode)  # AUTHENTICATE PLAIN with UTF-8
                conn.logout()
            out = dc.doveadm("auth", "test", dc.user, dc.password)
            self.assertIn("succeeded", out)

    def test_stop_removes_processes_and_tmpdir(self):
        dc = Dovecot()
        dc.start()
        name, tmp, ports = dc.instance_name, dc.tmpdir, (dc.tls_port, dc.plain_port)
        conn = dc.connect("tls")   # leave a logged-in imap process running
        conn.select("INBOX")
        procs = dovecot.processes_matching(name)
        self.assertTrue(any("/imap" in c for _, c in procs), procs)
        self.assertTrue(dovecot.processes_matching(dc.conf))       # the master
        t0 = time.monotonic()
        dc.stop()
        TIMINGS["stop (with client)"] = time.monotonic() - t0
        self.assertEqual(dovecot.processes_matching(name), [])
        self.assertEqual(dovecot.processes_matching(tmp), [])
        self.assertFalse(os.path.exists(tmp))
        for p in ports:
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", p), timeout=2).close()
        dc.stop()  # idempotent
        try:
            conn.shutdown()
        except Exception:
            pass

    def _child(self, body):
        code = ("import sys, time; sys.path.insert(0, %r)\n"
                "import dovecot\n"
                "%s\n"
                "print(dc.instance_name, dc.tmpdir, flush=True)\n"
                "time.sleep(60)\n") % (os.path.dirname(dovecot.__file__), body)
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        line = p.stdout.readline().decode().split()
        self.assertEqual(len(line), 2, "child did not start a server")
        return p, line[0], line[1]

    def _gone(self, name, timeout=15):
        deadline = time.monotonic() + timeout
        while dovecot.processes_matching(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        return dovecot.processes_matching(name) == []

    def test_sigterm_to_test_process_stops_server(self):
        p, name, tmp = self._child("dc = dovecot.Dovecot().start()")
        self.assertTrue(dovecot.processes_matching(name))
        p.send_signal(signal.SIGTERM)
        p.wait(20)
        p.stdout.close()
        self.assertEqual(p.returncode, -signal.SIGTERM)
        self.assertTrue(self._gone(name), dovecot.processes_matching(name))
        self.assertFalse(os.path.exists(tmp))

    def test_context_manager_exit_and_sigkill_fallback(self):
        # A test process killed with SIGKILL cannot clean up; PDEATHSIG still stops Dovecot.
        p, name, tmp = self._child("cm = dovecot.Dovecot()\ndc = cm.__enter__()")
        p.kill()
        p.wait(20)
        p.stdout.close()
        try:
            self.assertTrue(self._gone(name), dovecot.processes_matching(name))
        finally:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        with Dovecot() as dc:
            tmp = dc.tmpdir
            self.assertTrue(dc.running)
        self.assertFalse(dc.running)
        self.assertFalse(os.path.exists(tmp))


if __name__ == "__main__":
    prog = unittest.main(exit=False, verbosity=2)
    if TIMINGS:
        sys.stderr.write("timings (s): " + ", ".join("%s=%.2f" % kv for kv in TIMINGS.items())
                         + "\n")
    sys.exit(0 if prog.result.wasSuccessful() else 1)
