"""OAuth2 logins end to end: a local HTTP server plays the provider (token
endpoint, device authorization endpoint, token introspection) and a real
Dovecot checks each access token against it through its oauth2 passdb, so
AUTHENTICATE OAUTHBEARER and XOAUTH2 really run. Covered: the token fetched
before connecting, an expired token refreshed, a refused kept token
refreshed once, the rotated refresh token kept (0600, used next, survives a
restart, dropped when the file's changes), a revoked refresh token reported
as kind auth with the endpoint's words and what to do, the device flow
(slow_down honoured, denial), eval answering while a token request hangs,
and no token or secret in the log, errors, status or eval output."""
import base64
import json
import os
import socket
import stat
import tempfile
import threading
import time
import unittest
import urllib.parse

import dovecot
import vault
from httpserver import HttpServer, json_response
from oauthprovider import Provider
from vault import Engine


def lua(s):
    return json.dumps(s)        # a JSON string is a valid Lua string literal here


class OAuthBase(unittest.TestCase):
    mechanisms = "xoauth2 oauthbearer"

    @classmethod
    def setUpClass(cls):
        cls.srv = HttpServer().start()
        cls.conf_dir = tempfile.mkdtemp(prefix="ev-oauth-")
        Provider(cls.srv)       # the routes exist before Dovecot starts
        cls.d = dovecot.Dovecot(**Provider(cls.srv).dovecot_kwargs(cls.conf_dir, cls.mechanisms)).start()
        cls.d.fill({"INBOX": 5})

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.srv.stop()

    def setUp(self):
        self.p = Provider(self.srv, user=self.d.user)
        self.e = Engine(env={"no_proxy": "127.0.0.1,localhost"})
        self.outputs = []

    def tearDown(self):
        try:
            if self.e.proc and self.e.proc.poll() is None:
                self.assertEqual(self.e.stop(), 0, "engine exit status: %s" % getattr(self.e, "stderr", ""))
            self.assert_no_secrets()
        finally:
            self.e.cleanup()

    # -- helpers ------------------------------------------------------------------

    def oauth_value(self, refresh_token=None, preset=None, **extra):
        fields = {"token_url": self.p.token_url, "client_id": self.p.client_id,
                  "client_secret": self.p.client_secret, "device_url": self.p.device_url}
        if refresh_token:
            fields["refresh_token"] = refresh_token
        fields.update(extra)
        body = ", ".join("%s = %s" % (k, v if v.startswith("secret.") else lua(v))
                         for k, v in fields.items())
        return "oauth2%s { %s }" % ("." + preset if preset else "", body)

    def write(self, sid="acct", **kw):
        text = vault.source_file(host="127.0.0.1", port=self.d.tls_port, username=self.d.user,
                                 password=None, ca_file=lua(self.d.cert_path), poll=10,
                                 extra="  password = %s," % self.oauth_value(**kw))
        return self.e.write_source(sid, text)

    def run_once(self, timeout=60):
        self.e.start(once=True)
        rc = self.e.wait(timeout=timeout)
        self.outputs += [self.e.stdout, self.e.stderr]
        return rc

    def status_cli(self, *args):
        r = vault.run("status", "--data", self.e.data, *args)
        self.outputs += [r.stdout, r.stderr]
        return r

    def archived(self):
        import sqlite3
        db = sqlite3.connect(os.path.join(self.e.data, "archive.db"))
        try:
            return db.execute("SELECT count(*) FROM locations").fetchone()[0]
        finally:
            db.close()

    def store_path(self, sid="acct"):
        return os.path.join(self.e.data, "oauth2", sid + ".json")

    def wait_for(self, cond, timeout=30, what="condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError("timed out waiting for %s\n%s" % (what, self.e.log()[-4000:]))

    def source_error(self):
        # The engine's first attempt runs after start returns.
        st = self.e.eval("return vault.status('acct')")
        return st if st.get("error") else None

    def eval(self, chunk):
        r = self.e.eval(chunk, json_out=False)
        self.outputs += [r.stdout, r.stderr]
        return r.stdout

    def assert_no_secrets(self):
        texts = [self.e.log()] + [o or "" for o in self.outputs]
        secrets = [self.p.client_secret] + list(self.p.issued)
        for t in texts:
            for s in secrets:
                self.assertNotIn(s, t, "a secret leaked into the log or an output")

    def refresh_forms(self):
        return [f for _, f in self.p.token_forms if f.get("grant_type") == "refresh_token"]


class MechanismTest(OAuthBase):
    """Both mechanisms offered: OAUTHBEARER is chosen."""

    def test_token_fetched_then_oauthbearer_login(self):
        rt = self.p.issue_refresh()
        self.write(refresh_token=rt, scope="mail imap")
        self.e.log_level = "debug"
        self.assertEqual(self.run_once(), 0, self.e.log())
        self.assertEqual(self.archived(), 5)
        forms = self.refresh_forms()
        self.assertEqual(len(forms), 1)
        self.assertEqual(forms[0], {"grant_type": "refresh_token", "refresh_token": rt,
                                    "client_id": self.p.client_id,
                                    "client_secret": self.p.client_secret, "scope": "mail imap"})
        # Dovecot asked about exactly the token the endpoint gave.
        self.assertEqual(self.p.introspected, self.p.access_tokens())
        self.assertTrue(self.e.log_has(r"logged in .*auth=OAUTHBEARER"), self.e.log())
        self.assertIn("method=OAUTHBEARER", self.d.log_tail(200))
        # status and eval show the kind of login, never its values
        self.e.start()
        out = self.eval("return vault.sources()")
        self.assertIn("acct", out)
        out = self.eval('return require("sources").public(require("engine").get("acct").def)')
        self.assertIn("oauth2{...}", out)
        self.status_cli()
        self.status_cli("--json")

    def test_eval_answers_while_the_token_request_hangs(self):
        self.p.delay = 5
        self.write(refresh_token=self.p.issue_refresh())
        self.e.start()
        self.wait_for(lambda: self.p.token_forms, what="the token request")
        t0 = time.monotonic()
        out = self.eval("return 6 * 7")
        self.assertLess(time.monotonic() - t0, 2.0, "eval waited for the token request")
        self.assertIn("42", out)
        self.wait_for(lambda: self.e.log_has(r"import complete"), timeout=30, what="the import")

    def test_presets_fill_the_endpoints_and_scopes(self):
        self.e.start()
        out = self.e.eval("""
          local o = require("oauth2")
          local c = o.constructors()
          local g = o.settings(c.google { client_id = "g" })
          local m = o.settings(c.microsoft { client_id = "m", tenant = "contoso.onmicrosoft.com" })
          local mc = o.settings(c.microsoft { client_id = "m" })
          return { g = g, m = m, mc = mc }""")
        self.assertEqual(out["g"]["token_url"], "https://oauth2.googleapis.com/token")
        self.assertEqual(out["g"]["device_url"], "https://oauth2.googleapis.com/device/code")
        self.assertEqual(out["g"]["scope"], "https://mail.google.com/")
        self.assertEqual(out["m"]["token_url"],
                         "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token")
        self.assertEqual(out["m"]["device_url"],
                         "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode")
        self.assertEqual(out["m"]["scope"], "https://outlook.office.com/IMAP.AccessAsUser.All offline_access")
        self.assertIn("/common/oauth2/v2.0/token", out["mc"]["token_url"])

    def test_preset_sends_its_scope(self):
        rt = self.p.issue_refresh()
        self.write(refresh_token=rt, preset="microsoft", tenant="contoso")
        self.assertEqual(self.run_once(), 0, self.e.log())
        self.assertEqual(self.refresh_forms()[0]["scope"],
                         "https://outlook.office.com/IMAP.AccessAsUser.All offline_access")

    def test_values_from_secrets(self):
        rt = self.p.issue_refresh()
        sf = os.path.join(self.e.tmp, "rt.txt")
        with open(sf, "w") as f:
            f.write(rt + "\n")
        os.chmod(sf, 0o600)
        self.e.env["CLIENT_SECRET"] = self.p.client_secret
        self.write(refresh_token="secret.file %s" % lua(sf), client_secret='secret.env "CLIENT_SECRET"')
        self.assertEqual(self.run_once(), 0, self.e.log())
        self.assertEqual(self.refresh_forms()[0]["refresh_token"], rt)
        self.assertEqual(self.refresh_forms()[0]["client_secret"], self.p.client_secret)

    def test_expired_access_token_is_refreshed_before_login(self):
        self.p.expires_in = 3
        self.write(refresh_token=self.p.issue_refresh())
        self.e.start()
        self.wait_for(lambda: self.e.log_has("import complete"), what="the first session")
        first = self.p.access_tokens()
        self.assertEqual(len(first), 1)
        time.sleep(3.5)          # the kept token has expired
        self.eval('vault.pause("acct") vault.resume("acct")')
        self.wait_for(lambda: len(self.p.introspected) >= 2, what="the second login")
        self.wait_for(lambda: self.e.sources_by_id()["acct"]["status"] == "active", what="active")
        # a new token was fetched before connecting: the expired one never went to the server
        self.assertEqual(len(self.refresh_forms()), 2)
        self.assertEqual(self.p.introspected.count(first[0]), 1)
        self.assertFalse(self.e.log_has("refused the kept OAuth2 access token"))

    def test_kept_token_refused_is_refreshed_once(self):
        self.write(refresh_token=self.p.issue_refresh())
        self.e.start()
        self.wait_for(lambda: self.e.log_has("import complete"), what="the first session")
        first = self.p.access_tokens()[0]
        self.p.reject(first)     # revoked at the provider, still within its lifetime
        self.eval('vault.pause("acct") vault.resume("acct")')
        self.wait_for(lambda: len(self.p.introspected) >= 3, what="the retried login")
        self.wait_for(lambda: self.e.sources_by_id()["acct"]["status"] == "active", what="active")
        self.assertEqual(self.p.introspected[:2], [first, first])
        self.assertEqual(len(self.refresh_forms()), 2)
        self.assertTrue(self.e.log_has("refused the kept OAuth2 access token"))
        self.assertNotIn("error", self.e.sources_by_id()["acct"].get("status"))

    def test_fresh_token_refused_is_an_auth_error_with_a_hint(self):
        self.p.user = "somebody-else"       # introspection names another account
        self.write(refresh_token=self.p.issue_refresh())
        self.assertEqual(self.run_once(), 1)
        self.assertEqual(len(self.refresh_forms()), 1, "a fresh token is not refreshed again")
        out = json.loads(self.status_cli("--json").stdout)
        err = [s for s in out if s["id"] == "acct"][0]["error"]
        self.assertEqual(err["kind"], "auth")
        self.assertIn("refused the OAuth2 access token", err["message"])
        self.assertIn("AUTHENTICATIONFAILED", err["message"])
        self.assertIn("check that username is the address", err["message"])

    def test_revoked_refresh_token_is_kind_auth_with_what_to_do(self):
        rt = self.p.issue_refresh()
        self.p.revoke(rt)
        self.write(refresh_token=rt)
        self.assertEqual(self.run_once(), 1)
        self.assertEqual(self.p.introspected, [], "no login without a token")
        self.e.start()
        st = self.wait_for(self.source_error, what="the source's error")
        self.eval("return vault.status('acct')")     # the text too, for assert_no_secrets
        self.assertEqual(st["error"]["kind"], "auth")
        msg = st["error"]["message"]
        self.assertIn("Token has been expired or revoked.", msg)
        self.assertIn("invalid_grant", msg)
        self.assertIn("run emailvault oauth2 login acct", msg)
        self.assertIn("127.0.0.1:%d" % self.srv.port, msg)
        self.assertNotIn("next_retry", st["error"])         # not retried on its own
        r = self.status_cli()
        self.assertIn("run emailvault oauth2 login acct", r.stdout)

    def test_the_endpoint_words_never_carry_a_secret(self):
        def echo(req):
            form = dict(urllib.parse.parse_qsl(req.body.decode()))
            return json_response({"error": "invalid_grant", "error_description": "bad %s for %s\x07" % (
                form["refresh_token"], form["client_secret"])}, 400)
        self.p.srv.route("POST", "/token", echo)
        self.write(refresh_token=self.p.issue_refresh())
        self.assertEqual(self.run_once(), 1)
        self.e.start()
        msg = self.wait_for(self.source_error, what="the source's error")["error"]["message"]
        self.assertIn("(the OAuth2 token endpoint at 127.0.0.1:%d said invalid_grant: bad *** for ***?)"
                      % self.srv.port, msg)
        self.eval("return vault.status('acct')")
        self.status_cli()

    def test_no_refresh_token_yet_says_to_log_in(self):
        self.write()
        self.assertEqual(self.run_once(), 1)
        self.assertTrue(self.e.log_has(r"source failed .*no OAuth2 refresh token yet: run emailvault "
                                       r"oauth2 login acct.* kind=auth"), self.e.log())

    def test_invalid_client(self):
        self.write(refresh_token=self.p.issue_refresh(), client_secret="wrong-secret-value")
        self.assertEqual(self.run_once(), 1)
        self.assertTrue(self.e.log_has(r"source failed .*does not accept this client: check client_id "
                                       r".*said invalid_client: The OAuth client was not found.\).* kind=auth"),
                        self.e.log())
        self.assertFalse(self.e.log_has("wrong-secret-value"))

    def test_endpoint_down_is_retried_not_auth(self):
        self.write(refresh_token=self.p.issue_refresh())
        self.p.srv.route("POST", "/token", lambda req: (503, {"Content-Type": "text/plain"}, b"busy"))
        self.assertEqual(self.run_once(), 1)
        self.assertTrue(self.e.log_has(r"source failed .*answered HTTP 503 without a JSON answer; "
                                       r"it will be retried.* kind=protocol"), self.e.log())


class RotationTest(OAuthBase):
    def test_rotated_refresh_token_is_kept_used_and_survives_a_restart(self):
        self.p.rotate = True
        rt0 = self.p.issue_refresh()
        self.write(refresh_token=rt0)
        self.assertEqual(self.run_once(), 0, self.e.log())
        path = self.store_path()
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o700)
        with open(path) as f:
            stored = json.load(f)
        rt1 = stored["refresh_token"]
        self.assertNotEqual(rt1, rt0)
        self.assertIn(rt1, self.p.refresh_tokens)
        self.assertTrue(self.e.log_has("rotated the OAuth2 refresh token"))
        # A restart refreshes with the kept token (rt0 is dead now).
        self.assertEqual(self.run_once(), 0, self.e.log())
        self.assertEqual([f["refresh_token"] for f in self.refresh_forms()], [rt0, rt1])
        with open(path) as f:
            rt2 = json.load(f)["refresh_token"]
        self.assertNotIn(rt2, (rt0, rt1))
        # A new refresh_token in the file replaces the kept one.
        rt_new = self.p.issue_refresh()
        self.write(refresh_token=rt_new)
        self.assertEqual(self.run_once(), 0, self.e.log())
        self.assertEqual(self.refresh_forms()[-1]["refresh_token"], rt_new)
        self.assertTrue(self.e.log_has("the stored refresh token is dropped"))
        with open(path) as f:
            self.assertNotIn(json.load(f)["refresh_token"], (rt0, rt1, rt2, rt_new))

    def test_rotation_during_a_running_engine_is_used_at_the_next_refresh(self):
        self.p.rotate = True
        self.p.expires_in = 2
        rt0 = self.p.issue_refresh()
        self.write(refresh_token=rt0)
        self.e.start()
        self.wait_for(lambda: self.e.log_has("import complete"), what="the first session")
        time.sleep(2.5)
        self.eval('vault.pause("acct") vault.resume("acct")')
        self.wait_for(lambda: len(self.refresh_forms()) >= 2, what="the second refresh")
        self.wait_for(lambda: self.e.sources_by_id()["acct"]["status"] == "active", what="active")
        forms = self.refresh_forms()
        self.assertEqual(forms[0]["refresh_token"], rt0)
        self.assertNotEqual(forms[1]["refresh_token"], rt0)


class DeviceFlowTest(OAuthBase):
    def login(self, sid="acct", timeout=90):
        r = vault.run("oauth2", "login", "--sources", self.e.sources, "--data", self.e.data, sid,
                      timeout=timeout)
        self.outputs += [r.stdout, r.stderr]
        return r

    def test_device_flow_then_the_engine_logs_in_with_it(self):
        self.p.device_approve_after = 3
        self.p.device_slow_down_at = 2
        self.write()
        r = self.login()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("https://example.test/device", r.stdout)
        self.assertIn("WDJB-MJHT", r.stdout)
        self.assertIn("Signed in", r.stdout)
        self.assertEqual(self.p.device_forms, [{"client_id": self.p.client_id}])
        times = self.p.last_device["times"]
        self.assertEqual(len(times), 4)
        self.assertGreaterEqual(times[1] - times[0], 0.9)        # the endpoint's interval
        self.assertGreaterEqual(times[2] - times[1], 5.8)        # slow_down: 5 s more
        self.assertGreaterEqual(times[3] - times[2], 5.8)        # and it stays slower
        path = self.store_path()
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            rt = json.load(f)["refresh_token"]
        self.assertIn(rt, self.p.refresh_tokens)
        self.assertEqual(self.run_once(), 0, self.e.log())
        self.assertEqual(self.refresh_forms()[0]["refresh_token"], rt)
        self.assertEqual(self.archived(), 5)

    def test_login_while_the_engine_waits_for_it(self):
        self.p.device_approve_after = 1
        self.write()
        self.e.start()
        self.wait_for(lambda: (self.e.sources_by_id()["acct"].get("error") or {}).get("kind") == "auth",
                      what="the source waiting for a sign-in")
        r = self.login()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("The running engine retries acct now.", r.stdout)
        self.wait_for(lambda: self.e.log_has("import complete"), what="the import after the sign-in")

    def test_declined_sign_in(self):
        self.p.device_deny = True
        self.write()
        r = self.login()
        self.assertEqual(r.returncode, 1)
        self.assertIn("the sign-in was declined (access_denied: The user said no.)", r.stderr)
        self.assertFalse(os.path.exists(self.store_path()))

    def test_source_with_a_password_is_refused(self):
        self.e.write_source("pw", vault.source_file(port=self.d.tls_port))
        r = self.login("pw")
        self.assertEqual(r.returncode, 1)
        self.assertIn("this source logs in with a password", r.stderr)
        r = self.login("nope")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no source file", r.stderr)
        r = vault.run("oauth2", "login", "../x")
        self.assertEqual(r.returncode, 2)


class XOAuth2OnlyTest(OAuthBase):
    mechanisms = "xoauth2"

    def test_xoauth2_login_and_its_error_challenge(self):
        self.write(refresh_token=self.p.issue_refresh())
        self.assertEqual(self.run_once(), 0, self.e.log())
        self.assertTrue(self.e.log_has(r"logged in .*auth=XOAUTH2"), self.e.log())
        self.assertIn("method=XOAUTH2", self.d.log_tail(200))
        # A refused token: Dovecot's "+ <base64 JSON>" is answered, its NO reported.
        self.p.user = "somebody-else"
        self.assertEqual(self.run_once(), 1)
        self.assertTrue(self.e.log_has(r'source failed .*AUTHENTICATE XOAUTH2.*AUTHENTICATIONFAILED.*'
                                       r'its details: \{\\?"status\\?":\\?"401.* kind=auth'), self.e.log())


class OAuthBearerOnlyTest(OAuthBase):
    mechanisms = "oauthbearer"

    def test_oauthbearer_refusal_is_answered(self):
        self.p.user = "somebody-else"
        self.write(refresh_token=self.p.issue_refresh())
        self.assertEqual(self.run_once(), 1)
        self.assertTrue(self.e.log_has(r'source failed .*AUTHENTICATE OAUTHBEARER.*AUTHENTICATIONFAILED.*'
                                       r'its details: \{\\?"status\\?":\\?"invalid_token.* kind=auth'),
                        self.e.log())


class NoOAuthTest(OAuthBase):
    mechanisms = ""

    def test_server_without_oauth_mechanisms(self):
        self.write(refresh_token=self.p.issue_refresh())
        self.assertEqual(self.run_once(), 1)
        self.assertTrue(self.e.log_has(r"source failed .*offers neither AUTHENTICATE OAUTHBEARER nor "
                                       r"XOAUTH2.*wants a password.* kind=config"), self.e.log())


class ScriptedImap:
    """An IMAP server that answers AUTHENTICATE as SCRIPT says, for what
    Dovecot never does: no SASL-IR, a NO quoting the credentials back, a
    second challenge. Records the lines it read."""

    def __init__(self, caps, script):
        self.caps, self.script = caps, script
        self.lines = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            f = conn.makefile("rwb")
            try:
                f.write(b"* OK [CAPABILITY IMAP4rev1 %s] scripted\r\n" % self.caps)
                f.flush()
                tag = b"*"
                for step in self.script:
                    if step is None:
                        line = f.readline()
                        self.lines.append(line)
                        if tag == b"*":
                            tag = line.split(b" ")[0]
                    else:
                        f.write(step(self, tag) if callable(step) else step.replace(b"TAG", tag))
                        f.flush()
                f.readline()
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self.sock.close()


class ClientSideTest(unittest.TestCase):
    """The IMAP client's side of OAUTHBEARER and XOAUTH2 against scripted servers."""

    def setUp(self):
        self.srv = HttpServer().start()
        self.p = Provider(self.srv)
        self.e = Engine(env={"no_proxy": "127.0.0.1,localhost"})

    def tearDown(self):
        self.e.cleanup()
        self.srv.stop()

    def run_against(self, server):
        self.e.write_source("acct", vault.source_file(
            port=server.port, tls="false", password=None, extra="  password = oauth2 { token_url = %s, "
            "client_id = %s, client_secret = %s, refresh_token = %s }," % (
                lua(self.p.token_url), lua(self.p.client_id), lua(self.p.client_secret),
                lua(self.p.issue_refresh()))))
        self.e.start(once=True)
        rc = self.e.wait(timeout=60)
        server.close()
        return rc

    def assert_clean(self, *texts):
        token = self.p.access_tokens()[0]
        for t in texts + (self.e.log(),):
            for s in [self.p.client_secret, token] + self.p.issued:
                self.assertNotIn(s, t)
            for line in self.p_lines:       # the base64 responses the client sent
                for w in line.split():
                    if len(w) > 40:
                        self.assertNotIn(w.decode(), t, "the base64 response was quoted back")

    def test_without_sasl_ir_the_response_waits_for_the_continuation(self):
        def echo(srv, tag):
            # a server that quotes what it got: the token and the base64 response
            raw = base64.b64decode(srv.lines[-1].strip())
            return tag + b" NO [AUTHENTICATIONFAILED] you sent " + srv.lines[-1].strip() + b" = " + \
                raw.replace(b"\x01", b" ") + b"\r\n"
        server = ScriptedImap(b"AUTH=XOAUTH2", [None, b"+ \r\n", None, echo])
        self.assertEqual(self.run_against(server), 1)
        self.assertEqual(server.lines[0].split()[1:], [b"AUTHENTICATE", b"XOAUTH2"])
        raw = base64.b64decode(server.lines[1].strip())
        token = self.p.access_tokens()[0]
        self.assertEqual(raw, b"user=alice\x01auth=Bearer " + token.encode() + b"\x01\x01")
        self.assertTrue(self.e.log_has(r"source failed .*you sent \*\*\* = user=alice auth=Bearer \*\*\*"),
                        self.e.log())
        self.p_lines = server.lines
        self.assert_clean()

    def test_oauthbearer_error_challenge_is_answered_with_0x01(self):
        challenge = base64.b64encode(b'{"status":"invalid_token","scope":"x\x07y"}')
        server = ScriptedImap(b"SASL-IR AUTH=OAUTHBEARER AUTH=XOAUTH2",
                              [None, b"+ " + challenge + b"\r\n", None,
                               b"TAG NO [AUTHENTICATIONFAILED] no\r\n"])
        self.assertEqual(self.run_against(server), 1)
        words = server.lines[0].split()
        self.assertEqual(words[1:3], [b"AUTHENTICATE", b"OAUTHBEARER"])
        raw = base64.b64decode(words[3])
        token = self.p.access_tokens()[0]
        self.assertEqual(raw, b"n,a=alice,\x01host=127.0.0.1\x01port=%d\x01auth=Bearer %s\x01\x01"
                         % (server.port, token.encode()))
        self.assertEqual(server.lines[1], b"AQ==\r\n")
        self.assertTrue(self.e.log_has(r'its details: \{\\"status\\":\\"invalid_token\\",'
                                       r'\\"scope\\":\\"x\?y\\"\}'), self.e.log())
        self.p_lines = server.lines
        self.assert_clean()

    def test_a_second_challenge_ends_the_login(self):
        server = ScriptedImap(b"SASL-IR AUTH=XOAUTH2", [None, b"+ e30=\r\n", None, b"+ e30=\r\n", None])
        self.assertEqual(self.run_against(server), 1)
        self.assertEqual(server.lines[1], b"\r\n")        # XOAUTH2: an empty response
        self.assertTrue(self.e.log_has(r"source failed .*sent a second challenge after the OAuth2 access "
                                       r"token.* kind=protocol"), self.e.log())


if __name__ == "__main__":
    unittest.main()
