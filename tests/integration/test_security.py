"""Security checks as tests (issue 11, item 6), beside those that live with
their subject: the peer check of the control socket and the data folder's
mode (test_engine), a source reading another's password (test_config,
test_engine), passwords in file errors (test_config).

Here: credentials in no log line, error, status or eval output, in plain
form, quoted, or base64 as in AUTHENTICATE PLAIN, even when the server
quotes the failed command back; every file of the data folder 0600 and
every folder 0700 whatever the umask; TLS below 1.2 refused; tls =
"starttls" against a server without STARTTLS refused before any login."""
import base64
import json
import os
import socket
import ssl
import stat
import threading
import time
import unittest
import warnings

import dovecot
import vault
from archivecheck import archived
from fakeimap import FakeImap, message
from vault import Engine, source_file


def forms(user, password):
    """Every way the password could show: plain, quoted, base64 alone and as
    the AUTHENTICATE PLAIN response."""
    pw = password.encode()
    out = {password, base64.b64encode(pw).decode(),
           base64.b64encode(b"\0" + user.encode() + b"\0" + pw).decode(),
           '"%s"' % password.replace("\\", "\\\\").replace('"', '\\"')}
    return out


class CredentialsTest(unittest.TestCase):
    def test_no_credentials_in_logs_errors_status_or_eval(self):
        dc = dovecot.Dovecot().start()
        e = Engine(log_level="debug")
        echo = lambda line: b"[AUTHENTICATIONFAILED] rejected: " + line
        plain = FakeImap({"INBOX": [message(1)]})
        plain.auth_no = echo
        login = FakeImap({"INBOX": [message(1)]}, caps=b"IMAP4rev1 IDLE")
        login.auth_no = echo
        secrets = {
            "good": (dc.user, dc.password),                 # AUTHENTICATE PLAIN, accepted
            "wrong": (dc.user, "Wrong-Dovecot-pw-31"),      # refused by Dovecot
            "echo_plain": (plain.user, "Echoed-plain-pw-47"),
            "echo_login": (login.user, 'Echoed "login" pw\\58'),
        }
        try:
            for sid, srv_port in (("good", dc.plain_port), ("wrong", dc.plain_port),
                                  ("echo_plain", plain.port), ("echo_login", login.port)):
                user, pw = secrets[sid]
                e.write_source(sid, source_file(port=srv_port, username=user, password=pw, tls="false"))
            e.start()
            for sid in ("wrong", "echo_plain", "echo_login"):
                e.wait_for_log(r"\[%s\] source failed .*kind=auth" % sid)
            deadline = time.time() + 20
            while len(archived(e.data, "good")[0]) < 1 and time.time() < deadline:
                time.sleep(0.1)
            out = []
            out.append(json.dumps(e.eval("return vault.sources()")))
            for sid in secrets:
                out.append(e.eval("return vault.status('%s')" % sid, json_out=False).stdout)
                out.append(json.dumps(e.eval("return vault.status('%s')" % sid)))
            out.append(vault.run("status", "--data", e.data, "--json").stdout)
            out.append(vault.run("status", "--data", e.data).stdout)
            st = e.eval("return vault.status('echo_plain')")
            # the server's words are kept, the credentials in them are not
            self.assertIn("rejected: AUTHENTICATE PLAIN ***", st["error"]["message"])
            st = e.eval("return vault.status('echo_login')")
            self.assertIn("rejected: LOGIN fake ***", st["error"]["message"])
            e.stop()
            text = "\n".join(out) + e.log() + (e.stdout or "") + (e.stderr or "")
            with open(os.path.join(e.data, "archive.db"), "rb") as f:
                db = f.read().decode("latin-1")
            for sid, (user, pw) in secrets.items():
                for form in forms(user, pw):
                    self.assertNotIn(form, text, "%s: %r shown" % (sid, form))
                    self.assertNotIn(form, db, "%s: %r in archive.db" % (sid, form))
        finally:
            e.cleanup()
            plain.close()
            login.close()
            dc.stop()


class ModesTest(unittest.TestCase):
    def check_modes(self, root):
        for dirpath, dirnames, filenames in os.walk(root):
            self.assertEqual(stat.S_IMODE(os.stat(dirpath).st_mode), 0o700, dirpath)
            for name in filenames:
                p = os.path.join(dirpath, name)
                self.assertEqual(stat.S_IMODE(os.lstat(p).st_mode), 0o600, p)

    def test_modes_whatever_the_umask(self):
        srv = FakeImap({"INBOX": [message(i) for i in range(1, 6)], "Other": [message(9)]})
        e = Engine(log_level="info")
        old = os.umask(0)
        try:
            e.write_source("src", source_file(port=srv.port, username=srv.user, password=srv.password,
                                              tls="false"))
            e.start()
            deadline = time.time() + 20
            while len(archived(e.data, "src")[0]) < 6 and time.time() < deadline:
                time.sleep(0.1)
            self.assertEqual(len(archived(e.data, "src")[0]), 6)
            self.check_modes(e.data)          # with the engine running: socket, lock, WAL files
            self.assertEqual(stat.S_IMODE(os.stat(e.log_path).st_mode), 0o600)
            e.stop()
            self.check_modes(e.data)
            # the commands that write without an engine
            for args in (("pause", "--data", e.data, "src"), ("resume", "--data", e.data, "src"),
                         ("verify", "--data", e.data, "--reclaim")):
                r = vault.run(*args)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.check_modes(e.data)
            fresh = os.path.join(e.tmp, "fresh")      # refused: nothing made with loose modes
            vault.run("pause", "--data", fresh, "src")
            if os.path.exists(fresh):
                self.check_modes(fresh)
            r = vault.run("verify", "--data", e.data)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.check_modes(e.data)
        finally:
            os.umask(old)
            e.cleanup()
            srv.close()


class TlsServer:
    """Greets over TLS limited to MAX (a ssl.TLSVersion); notes failures."""

    def __init__(self, cert, key, maximum):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.ctx.minimum_version = ssl.TLSVersion.TLSv1
            self.ctx.maximum_version = maximum
        self.ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.handshakes, self.errors = [], []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                t = self.ctx.wrap_socket(c, server_side=True)
                self.handshakes.append(t.version())
                t.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n")
                t.recv(1000)
                t.close()
            except (OSError, ssl.SSLError) as ex:
                self.errors.append(str(ex))
                c.close()

    def close(self):
        self.sock.close()


class TlsTest(unittest.TestCase):
    def setUp(self):
        self.dc = dovecot.Dovecot().start()     # for its certificate
        self.e = Engine(log_level="debug")

    def tearDown(self):
        self.e.cleanup()
        self.dc.stop()

    def status_after_failure(self, port):
        self.e.write_source("src", source_file(port=port, tls="true", ca_file='"%s"' % self.dc.cert_path,
                                               connect_timeout=5))
        self.e.start()
        self.e.wait_for_log(r"\[src\] source failed", timeout=20)
        return self.e.eval("return vault.status('src')")["error"]

    def test_tls_below_1_2_is_refused(self):
        old = TlsServer(self.dc.cert_path, self.dc.key_path, ssl.TLSVersion.TLSv1_1)
        try:
            # the server can do TLS 1.1: a client that allows it gets in
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            try:
                with ctx.wrap_socket(socket.create_connection(("127.0.0.1", old.port), timeout=5)) as s:
                    self.assertEqual(s.version(), "TLSv1.1")
            except (ssl.SSLError, OSError) as ex:
                self.skipTest("this OpenSSL cannot speak TLS 1.1 at all: %s" % ex)
            err = self.status_after_failure(old.port)
            self.assertEqual(err["kind"], "tls", err)
            self.assertRegex(err["message"], r"(?i)protocol|version")
            self.assertEqual(old.handshakes, ["TLSv1.1"])     # only the test's own client got in
        finally:
            old.close()

    def test_tls_1_2_is_accepted(self):
        ok = TlsServer(self.dc.cert_path, self.dc.key_path, ssl.TLSVersion.TLSv1_2)
        try:
            err = self.status_after_failure(ok.port)
            self.assertNotIn(err["kind"], ("tls", "certificate"), err)
            self.assertEqual(ok.handshakes, ["TLSv1.2"])
        finally:
            ok.close()


class StarttlsTest(unittest.TestCase):
    def test_starttls_source_against_a_server_without_it(self):
        srv = FakeImap({"INBOX": [message(1)]})        # offers no STARTTLS
        e = Engine(log_level="debug")
        try:
            e.write_source("src", source_file(port=srv.port, username=srv.user, password=srv.password,
                                              tls='"starttls"'))
            e.start()
            e.wait_for_log(r"\[src\] source failed", timeout=20)
            err = e.eval("return vault.status('src')")["error"]
            self.assertEqual(err["kind"], "tls")
            self.assertIn("does not offer STARTTLS", err["message"])
            time.sleep(0.5)
            sent = b"\n".join(srv.commands)
            self.assertNotIn(b"LOGIN", sent)
            self.assertNotIn(b"AUTHENTICATE", sent)
            self.assertNotIn(srv.password.encode(), sent)
            self.assertEqual(archived(e.data, "src")[0], {})
        finally:
            e.cleanup()
            srv.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
