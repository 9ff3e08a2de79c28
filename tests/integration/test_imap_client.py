"""The IMAP client against a real Dovecot (and a few scripted misbehaving
servers for what Dovecot never does), through vault.imap in the engine."""
import hashlib
import json
import os
import socket
import threading
import time
import unittest

import dovecot
import mailgen
from vault import Engine


def lua_str(s):
    """A Lua long-bracket string literal for any text."""
    eq = "=" * 3
    return "[%s[%s]%s]" % (eq, s, eq)


class ScriptedServer:
    """Answers each connection with fixed lines: for server behaviour Dovecot
    does not show (no STARTTLS, garbage, silence, BYE)."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.stop = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        f = conn.makefile("rwb")
        try:
            for step in self.script:
                if step is None:                 # read one command line
                    line = f.readline()
                    self.received.append(line)
                    if not line:
                        return
                    self.tag = line.split(b" ")[0]
                elif step == "sleep":
                    time.sleep(30)
                else:
                    f.write(step.replace(b"TAG", getattr(self, "tag", b"*")))
                    f.flush()
            time.sleep(0.5)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop = True
        self.sock.close()


class ImapClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = dovecot.Dovecot().start()
        cls.d.create_folders(["Archive/2023/Q1", "Entwürfe"])
        cls.box = mailgen.build_mailbox({"INBOX": 30, "Archive/2023/Q1": 5, "Entwürfe": 3},
                                        seed=7, duplicates=0, max_size=60000)
        cls.d.fill(cls.box)
        cls.e = Engine()
        cls.e.start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.assert_no_seen()
        finally:
            cls.e.stop()
            cls.e.cleanup()
            cls.d.stop()

    @classmethod
    def assert_no_seen(cls):
        n = cls.d.seen_count()
        if n:
            raise AssertionError("%d messages carry \\Seen after the tests" % n)

    def conn_args(self, port=None, **kw):
        args = {"host": '"127.0.0.1"', "port": port or self.d.tls_port,
                "username": lua_str(self.d.user), "password": lua_str(self.d.password)}
        for k, v in kw.items():
            args[k] = v
        return "{" + ", ".join("%s = %s" % (k, v) for k, v in args.items()) + "}"

    def connect_result(self, **kw):
        """Runs connect and returns {ok=true} or the error table."""
        chunk = ("local c, err = vault.imap.connect%s\n"
                 "if not c then return err end\n"
                 "local info = c:info() c:logout() return {ok = true, security = info.security}"
                 % self.conn_args(**kw))
        return self.e.eval(chunk)

    # -- connection modes and errors -----------------------------------------
    def test_implicit_tls_verified_with_ca_file(self):
        r = self.connect_result(ca_file=lua_str(self.d.cert_path))
        self.assertTrue(r.get("ok"), r)
        self.assertRegex(r["security"], r"^TLSv1\.[23] ")

    def test_starttls(self):
        r = self.connect_result(port=self.d.plain_port, tls='"starttls"', ca_file=lua_str(self.d.cert_path))
        self.assertTrue(r.get("ok"), r)
        self.assertRegex(r["security"], r"^TLSv1\.[23] ")

    def test_plaintext_logs_a_warning(self):
        r = self.connect_result(port=self.d.plain_port, tls="false")
        self.assertEqual(r, {"ok": True, "security": "plaintext"})
        self.e.wait_for_log(r"without TLS \(tls = false\): the password and the mail travel unencrypted")

    def test_self_signed_certificate_is_refused_by_default(self):
        r = self.connect_result()
        self.assertEqual(r["kind"], "certificate", r)
        self.assertIn("self-signed", r["message"])
        self.assertIn("allow_insecure_cert", r["message"])
        self.assertIn("127.0.0.1:%d" % self.d.tls_port, r["message"])
        self.assertIn(self.d.cert_sha256_colons.upper(), r["message"])

    def test_allow_insecure_cert_connects_and_logs_fingerprint(self):
        r = self.connect_result(allow_insecure_cert="true")
        self.assertTrue(r.get("ok"), r)
        self.e.wait_for_log(r"accepting the certificate of 127\.0\.0\.1:%d .*self-signed.*%s"
                            % (self.d.tls_port, self.d.cert_sha256_colons.upper()))
        r = self.connect_result(port=self.d.plain_port, tls='"starttls"', allow_insecure_cert="true")
        self.assertTrue(r.get("ok"), r)

    def test_refused(self):
        port = dovecot.free_ports(1)[0]
        r = self.connect_result(port=port)
        self.assertEqual(r["kind"], "refused")
        self.assertIn("127.0.0.1:%d" % port, r["message"])
        self.assertIn("verify the host and port", r["message"])

    def test_wrong_password(self):
        chunk = ('local c, err = vault.imap.connect{host="127.0.0.1", port=%d, tls=false, '
                 'username="alice", password="not-the-password"} return err' % self.d.plain_port)
        r = self.e.eval(chunk)
        self.assertEqual(r["kind"], "auth")
        self.assertIn("AUTHENTICATIONFAILED", r["message"])
        self.assertIn("App Password", r["message"])
        self.assertIn("127.0.0.1:%d" % self.d.plain_port, r["message"])
        self.assertNotIn("not-the-password", self.e.log())

    def test_tls_on_a_plain_port(self):
        r = self.connect_result(port=self.d.plain_port, tls="true")
        self.assertEqual(r["kind"], "tls", r)
        self.assertIn('tls = "starttls"', r["message"])

    def test_unresolvable_host(self):
        chunk = ('local c, err = vault.imap.connect{host="no-such-host.invalid", port=993, '
                 'username="u", password="p", connect_timeout=3} return err')
        r = self.e.eval(chunk)
        self.assertEqual(r["kind"], "dns", r)
        self.assertIn("no-such-host.invalid", r["message"])

    # -- authentication with awkward passwords ------------------------------------
    def test_awkward_password_login_and_plain(self):
        # AUTHENTICATE PLAIN (SASL-IR) and the LOGIN command, where the
        # password needs escapes (quoted) and 8-bit bytes (a literal).
        d = dovecot.Dovecot(password=dovecot.AWKWARD_PASSWORD).start()
        try:
            for auth in ("plain", "login"):
                with self.subTest(auth=auth):
                    for tls in ("false", '"starttls"'):
                        chunk = ("local c, err = vault.imap.connect{host='127.0.0.1', port=%d, tls=%s, "
                                 "allow_insecure_cert=true, username='alice', password=%s, auth='%s'}\n"
                                 "if not c then return err end\n"
                                 "local caps = c:capabilities() c:logout() return caps"
                                 % (d.plain_port, tls, lua_str(dovecot.AWKWARD_PASSWORD), auth))
                        caps = self.e.eval(chunk)
                        self.assertIsInstance(caps, list, caps)
                        self.assertIn("IMAP4REV1", caps)
        finally:
            d.stop()

    # -- commands ---------------------------------------------------------
    def with_conn(self, body, **kw):
        chunk = ("local c = assert(vault.imap.connect%s)\n%s" % (self.conn_args(allow_insecure_cert="true", **kw), body))
        return self.e.eval(chunk)

    def test_capabilities_are_reread_after_login(self):
        caps = self.with_conn("local caps = c:capabilities() c:logout() return caps")
        self.assertIn("IDLE", caps)
        self.assertNotIn("LOGINDISABLED", caps)
        self.assertNotIn("AUTH=PLAIN", caps)       # pre-login capabilities are gone

    def test_list_decodes_names_and_special_use(self):
        folders = self.with_conn("local l = c:list() c:logout() return l")
        by_name = {f["name"]: f for f in folders}
        self.assertIn("Entwürfe", by_name)
        self.assertEqual(by_name["Entwürfe"]["raw"], "Entw&APw-rfe")
        self.assertIn("Archive/2023/Q1", by_name)
        self.assertEqual(by_name["Archive/2023/Q1"]["delimiter"], "/")
        self.assertEqual(by_name["Sent"]["special_use"], "\\Sent")
        self.assertTrue(all(f["selectable"] for f in folders if f["name"] == "INBOX"))

    def test_examine_non_ascii_folder(self):
        info = self.with_conn('local i = c:examine("Entwürfe") c:logout() return i')
        self.assertEqual(info["exists"], 3)
        self.assertEqual(info["uidvalidity"], self.d.uidvalidity("Entwürfe"))
        self.assertEqual(info["uidnext"], 4)

    def test_examine_missing_folder_is_an_error_not_a_crash(self):
        r = self.with_conn('local i, err = c:examine("No/Such/Folder") '
                           'local ok = c:noop() c:logout() return {err = err, still_open = ok ~= nil}')
        self.assertEqual(r["err"]["kind"], "protocol")
        self.assertIn("EXAMINE No/Such/Folder", r["err"]["message"])
        self.assertTrue(r["still_open"])

    def test_search_and_status(self):
        r = self.with_conn('c:examine("INBOX") local s = c:search("UID 10:30") '
                           'local st = c:status("Archive/2023/Q1") c:logout() return {s = s, st = st}')
        self.assertEqual(r["s"], list(range(10, 31)))
        self.assertEqual(r["st"]["messages"], 5)
        self.assertEqual(r["st"]["uidnext"], 6)

    def fetch_hashes(self, folder, pipeline, batch):
        body = ('c:examine(%s)\n'
                'local msgs = assert(c:fetch("1:*", nil, {batch = %d}))\n'
                'local out = {}\n'
                'for _, m in ipairs(msgs) do out[#out + 1] = {uid = m.uid, size = m.size, '
                'hex = (m.body:gsub(".", function(ch) return string.format("%%02x", ch:byte()) end))} end\n'
                'c:logout() return out' % (lua_str(folder), batch))
        rows = self.with_conn(body, pipeline=pipeline)
        return {r["uid"]: hashlib.sha256(bytes.fromhex(r["hex"])).hexdigest() for r in rows}

    def test_fetch_bodies_byte_exact_any_pipeline_depth(self):
        want = {uid: hashlib.sha256(raw).hexdigest() for uid, raw in self.d.server_messages("INBOX")}
        for pipeline, batch in ((1, 1), (1, 7), (4, 3), (16, 1)):
            with self.subTest(pipeline=pipeline, batch=batch):
                self.assertEqual(self.fetch_hashes("INBOX", pipeline, batch), want)

    def test_fetch_list_of_uids_with_gaps(self):
        rows = self.with_conn('c:examine("INBOX") local m = c:fetch({3, 1, 2, 9, 10, 11, 30}, '
                              '"UID FLAGS INTERNALDATE RFC822.SIZE") c:logout() return m')
        self.assertEqual(sorted(r["uid"] for r in rows), [1, 2, 3, 9, 10, 11, 30])
        self.assertTrue(all(isinstance(r["internaldate"], int) for r in rows))

    def test_fetch_refuses_items_that_set_seen(self):
        r = self.with_conn('c:examine("INBOX") local ok, err = pcall(c.fetch, c, "1", "BODY[]") '
                           'c:logout() return err', )
        self.assertIn("BODY.PEEK", r)

    def test_idle_sees_new_mail(self):
        # The chunk idles; a message is delivered while it waits.
        result = {}

        def run():
            result["r"] = self.with_conn('c:examine("INBOX") local t0 = vault.now() '
                                         'local ev = c:idle(20) local dt = vault.now() - t0 '
                                         'c:logout() return {ev = ev, dt = dt}')
        th = threading.Thread(target=run)
        th.start()
        time.sleep(1.5)
        self.d.deliver("INBOX", mailgen.MailGen(seed=99).message(size=3000))
        th.join(30)
        r = result["r"]
        self.assertLess(r["dt"], 10)
        self.assertTrue(any(ev["type"].upper() == "EXISTS" for ev in r["ev"]), r)

    def test_idle_timeout_returns_empty(self):
        r = self.with_conn('c:examine("Entwürfe") local ev = c:idle(0.5) c:logout() return #ev')
        self.assertEqual(r, 0)

    def test_stale_handle_fails_cleanly(self):
        r = self.with_conn('c:logout() local ok, err = pcall(c.examine, c, "INBOX") return err')
        self.assertIn("closed", r)
        r = self.e.eval('return tostring(vault.imap.connect)')
        self.assertIn("function", r)

    # -- servers that misbehave --------------------------------------------------
    def scripted(self, script, **kw):
        srv = ScriptedServer(script)
        try:
            return self.connect_result(port=srv.port, **kw), srv
        finally:
            srv.close()

    def test_starttls_not_offered_never_falls_back(self):
        r, srv = self.scripted([b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n", None,
                                b"TAG OK done\r\n", None], tls='"starttls"')
        self.assertEqual(r["kind"], "tls")
        self.assertIn("does not offer STARTTLS", r["message"])
        self.assertFalse(any(b"LOGIN" in l or b"AUTHENTICATE" in l for l in srv.received), srv.received)

    def test_logindisabled_is_respected(self):
        r, srv = self.scripted([b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] hi\r\n", None], tls="false")
        self.assertEqual(r["kind"], "auth")
        self.assertIn("LOGINDISABLED", r["message"])
        self.assertFalse(any(b"LOGIN" in l for l in srv.received))

    def test_garbage_greeting_is_a_protocol_error(self):
        r, _ = self.scripted([b"HTTP/1.1 400 Bad Request\r\n\r\n"], tls="false")
        self.assertEqual(r["kind"], "protocol")

    def test_bye_greeting(self):
        r, _ = self.scripted([b"* BYE [UNAVAILABLE] Too many connections\r\n"], tls="false")
        self.assertEqual(r["kind"], "protocol")
        self.assertIn("Too many connections", r["message"])

    def test_silent_server_times_out(self):
        r, _ = self.scripted(["sleep"], tls="false", connect_timeout=1)
        self.assertEqual(r["kind"], "timeout")

    def test_server_closing_mid_session(self):
        r, _ = self.scripted([b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n", None,
                              b"TAG OK [CAPABILITY IMAP4rev1] logged in\r\n", None,
                              b"* BYE [UNAVAILABLE] shutting down\r\n"], tls="false")
        # connect worked; the LOGOUT in connect_result just ends early
        self.assertTrue(r.get("ok") or r.get("kind") == "protocol", r)

    def test_malformed_response_is_a_protocol_error(self):
        srv = ScriptedServer([b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\n", None,
                              b"TAG OK [CAPABILITY IMAP4rev1] in\r\n", None,
                              b"* LIST (\\Noselect \"/\" )))\r\n"])
        try:
            r = self.e.eval('local c = assert(vault.imap.connect%s) local l, err = c:list() return err'
                            % self.conn_args(port=srv.port, tls="false"))
        finally:
            srv.close()
        self.assertEqual(r["kind"], "protocol")
        self.assertIn("cannot parse", r["message"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
