"""vault.http.request against a local HTTP(S) server (tests/harness/httpserver.py):
round trips, statuses, redirects, size and time bounds, many requests at
once, error kinds, TLS verification, cancelling, and no secret from a URL in
the log or an error."""
import json
import os
import signal
import ssl
import subprocess
import threading
import time
import unittest

import sqlite3

import vault
from fakeimap import FakeImap, message
from vault import Engine, source_file
from httpserver import HttpServer, Response, free_port, json_response, redirect


def lua_str(s):
    return json.dumps(s)        # a JSON string is a valid Lua string literal here


def echo(req):
    return json_response({
        "method": req.method, "path": req.path, "query": req.query,
        "headers": {k.lower(): v for k, v in req.header_list()},
        "body": req.body.decode("utf-8", "replace"),
    }, status=201, headers={"X-Reply": "yes"})


class HttpTestBase(unittest.TestCase):
    tls = False

    def setUp(self):
        self.srv = HttpServer(tls=self.tls).start()
        # a proxy set in the environment must not take the test's requests
        self.e = Engine(env={"no_proxy": "127.0.0.1,localhost,.invalid"})
        self.e.start()

    def tearDown(self):
        try:
            rc = self.e.stop()
            self.assertEqual(rc, 0, "engine exit status (a leak fails it under ASan): %s"
                             % getattr(self.e, "stderr", ""))
        finally:
            self.e.cleanup()
            self.srv.stop()

    def request(self, fields, timeout=60):
        """Runs vault.http.request{FIELDS} in eval: {"r": response} or {"e": error}."""
        return self.e.eval("local r, e = vault.http.request{%s} return { r = r, e = e }" % fields,
                           timeout=timeout)


class RoundTripTest(HttpTestBase):
    def test_post_with_headers_and_body(self):
        self.srv.route("*", "/echo", echo)
        out = self.request('method = "POST", url = %s, headers = { ["X-Token-Id"] = "42", '
                           '["Content-Type"] = "text/plain" }, body = "hello\\0world"'
                           % lua_str(self.srv.url("/echo?a=1&b=two")))
        r = out["r"]
        self.assertEqual(r["status"], 201)
        self.assertEqual(r["headers"]["x-reply"], "yes")
        self.assertEqual(r["headers"]["content-type"], "application/json")
        got = json.loads(r["body"])
        self.assertEqual(got["method"], "POST")
        self.assertEqual(got["path"], "/echo")
        self.assertEqual(got["query"], {"a": "1", "b": "two"})
        self.assertEqual(got["headers"]["x-token-id"], "42")
        self.assertEqual(got["headers"]["content-type"], "text/plain")
        self.assertEqual(got["headers"]["content-length"], "11")
        self.assertNotIn("expect", got["headers"])
        self.assertTrue(got["headers"]["user-agent"].startswith("MyEmailVault/"))
        self.assertEqual(got["body"], "hello\x00world")

    def test_get_default_list_headers_and_other_methods(self):
        self.srv.route("*", "/echo", echo)
        url = lua_str(self.srv.url("/echo"))
        got = json.loads(self.request('url = %s, headers = { "Accept: text/x-test", '
                                      '"X-Two:  spaced  " }' % url)["r"]["body"])
        self.assertEqual(got["method"], "GET")
        self.assertEqual(got["headers"]["accept"], "text/x-test")
        self.assertEqual(got["headers"]["x-two"], "spaced")
        self.assertEqual(got["body"], "")
        for method in ("put", "DELETE", "PATCH"):
            got = json.loads(self.request('method = "%s", url = %s, body = "b-%s"'
                                          % (method, url, method))["r"]["body"])
            self.assertEqual(got["method"], method.upper())
            self.assertEqual(got["body"], "b-" + method)
        got = json.loads(self.request('method = "DELETE", url = %s' % url)["r"]["body"])
        self.assertEqual((got["method"], got["body"]), ("DELETE", ""))

    def test_repeated_response_headers_are_joined(self):
        self.srv.route("GET", "/multi", lambda req: Response(
            200, [("X-Multi", "a"), ("x-multi", "b"), ("Content-Type", "text/plain")], b"ok"))
        r = self.request("url = %s" % lua_str(self.srv.url("/multi")))["r"]
        self.assertEqual(r["headers"]["x-multi"], "a, b")

    def test_status_codes_are_answers_not_errors(self):
        for status in (204, 404, 418, 500, 503):
            self.srv.route("GET", "/s%d" % status,
                           lambda req, s=status: Response(s, {}, b"" if s == 204 else b"status body"))
            out = self.request("url = %s" % lua_str(self.srv.url("/s%d" % status)))
            self.assertNotIn("e", out)
            self.assertEqual(out["r"]["status"], status)
            self.assertEqual(out["r"]["body"], "" if status == 204 else "status body")

    def test_head_reads_no_body_even_when_large(self):
        self.srv.route("HEAD", "/big", lambda req: Response(
            200, {"Content-Length": str(1 << 30)}, b""))
        r = self.request('method = "HEAD", url = %s, max_size = 100'
                         % lua_str(self.srv.url("/big")))["r"]
        self.assertEqual(r["status"], 200)
        self.assertEqual(r["headers"]["content-length"], str(1 << 30))
        self.assertEqual(r["body"], "")

    def test_urlencode_and_form(self):
        out = self.e.eval('return { vault.http.urlencode("a b&c=d/é~"), '
                          'vault.http.form{ z = "1", a = "x y" }, '
                          'vault.http.form{ { "grant_type", "refresh_token" }, { "n", 5 } } }')
        self.assertEqual(out, ["a%20b%26c%3Dd%2F%C3%A9~", "a=x%20y&z=1",
                               "grant_type=refresh_token&n=5"])

    def test_form_body_reaches_the_server(self):
        seen = {}

        def token(req):
            import urllib.parse
            seen.update(urllib.parse.parse_qsl(req.body.decode()))
            seen["ctype"] = req.header("Content-Type")
            return json_response({"access_token": "abc", "expires_in": 3600})
        self.srv.route("POST", "/token", token)
        out = self.request('method = "POST", url = %s, headers = { ["Content-Type"] = '
                           '"application/x-www-form-urlencoded" }, body = vault.http.form{ '
                           'grant_type = "refresh_token", refresh_token = "r/t+ok=" }'
                           % lua_str(self.srv.url("/token")))
        self.assertEqual(out["r"]["status"], 200)
        self.assertEqual(seen, {"grant_type": "refresh_token", "refresh_token": "r/t+ok=",
                                "ctype": "application/x-www-form-urlencoded"})


class RedirectTest(HttpTestBase):
    def test_redirects_followed(self):
        self.srv.route("GET", "/a", lambda req: redirect("/b"))
        self.srv.route("GET", "/b", lambda req: redirect(self.srv.url("/c"), 301))
        self.srv.route("GET", "/c", lambda req: "the end")
        r = self.request("url = %s" % lua_str(self.srv.url("/a")))["r"]
        self.assertEqual((r["status"], r["body"]), (200, "the end"))
        self.assertEqual(len(self.srv.requests_to("/c")), 1)

    def test_post_then_303_becomes_get(self):
        self.srv.route("POST", "/form", lambda req: redirect("/done", 303))
        self.srv.route("*", "/done", echo)
        r = self.request('method = "POST", url = %s, body = "x=1"' % lua_str(self.srv.url("/form")))["r"]
        self.assertEqual(json.loads(r["body"])["method"], "GET")

    def test_redirect_loop_is_stopped(self):
        self.srv.route("GET", "/loop", lambda req: redirect("/loop"))
        e = self.request("url = %s" % lua_str(self.srv.url("/loop")))["e"]
        self.assertEqual(e["kind"], "protocol")
        self.assertIn("redirected more than 5 times", e["message"])
        self.assertIn("127.0.0.1:%d" % self.srv.port, e["message"])
        self.assertEqual(len(self.srv.requests_to("/loop")), 6)   # the first and 5 redirects

    def test_max_redirects_zero_returns_the_redirect(self):
        self.srv.route("GET", "/a", lambda req: redirect("/b"))
        r = self.request("url = %s, max_redirects = 0" % lua_str(self.srv.url("/a")))["r"]
        self.assertEqual(r["status"], 302)
        self.assertEqual(r["headers"]["location"], "/b")
        self.assertEqual(self.srv.requests_to("/b"), [])

    def test_redirect_to_file_or_ftp_is_refused(self):
        for target in ("file:///etc/passwd", "ftp://127.0.0.1:%d/x" % free_port()):
            self.srv.route("GET", "/away", lambda req, t=target: redirect(t))
            e = self.request("url = %s" % lua_str(self.srv.url("/away")))["e"]
            self.assertEqual(e["kind"], "protocol", target)
            self.assertIn("neither http nor https", e["message"])

    def test_only_http_and_https_urls(self):
        for url in ("file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/",
                    "127.0.0.1/no-scheme"):
            r = self.e.eval("return vault.http.request{ url = %s }" % lua_str(url),
                            json_out=False, check=False)
            self.assertEqual(r.returncode, 1, url)
            self.assertIn("not an http:// or https:// URL", r.stderr)


class BoundsTest(HttpTestBase):
    def test_response_larger_than_max_size_is_refused(self):
        body = b"x" * 5000
        self.srv.route("GET", "/sized", lambda req: Response(200, {}, body))
        self.srv.route("GET", "/chunked", lambda req: Response(
            200, {}, chunks=[body[i:i + 500] for i in range(0, len(body), 500)]))
        for path in ("/sized", "/chunked"):
            e = self.request("url = %s, max_size = 4999" % lua_str(self.srv.url(path)))["e"]
            self.assertEqual(e["kind"], "protocol", path)
            self.assertIn("max_size", e["message"])
            self.assertIn("4999", e["message"])
            r = self.request("url = %s, max_size = 5000" % lua_str(self.srv.url(path)))["r"]
            self.assertEqual(len(r["body"]), 5000, path)

    def test_default_max_size_is_16_mib(self):
        big = b"y" * ((16 << 20) + 1)
        self.srv.route("GET", "/huge", lambda req: Response(200, {}, chunks=[big[i:i + 65536]
                                                                            for i in range(0, len(big), 65536)]))
        e = self.request("url = %s" % lua_str(self.srv.url("/huge")))["e"]
        self.assertEqual(e["kind"], "protocol")
        self.assertIn("16777216", e["message"])

    def test_timeout_while_eval_keeps_answering(self):
        def silent(req):
            req.wait_closed(30)
            return None
        self.srv.route("GET", "/silent", silent)
        t0 = time.time()
        slow = subprocess.Popen([vault.BIN, "eval", "--data", self.e.data, "--json",
                                 "local r, e = vault.http.request{ url = %s, timeout = 2 } "
                                 "return e" % lua_str(self.srv.url("/silent"))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 1.5
        answers = 0
        while time.time() < deadline:
            t1 = time.time()
            self.assertEqual(self.e.eval("return 1 + 1", timeout=5), 2)
            self.assertLess(time.time() - t1, 1.0)
            answers += 1
        self.assertIsNone(slow.poll(), "the slow request ended too early")
        out, err = slow.communicate(timeout=10)
        elapsed = time.time() - t0
        e = json.loads(out)
        self.assertEqual(e["kind"], "timeout", err)
        self.assertIn("127.0.0.1:%d did not answer within 2" % self.srv.port, e["message"])
        self.assertGreaterEqual(elapsed, 1.9)
        self.assertLess(elapsed, 6)
        self.assertGreater(answers, 3)

    def test_fifty_requests_in_flight_at_once(self):
        def slow(req):
            time.sleep(0.8)
            return "n=" + req.query["i"]
        self.srv.route("GET", "/slow", slow)
        chunk = """
          local url, results, n = %s, {}, 0
          local me = vault.task.current()
          for i = 1, 50 do
            vault.task.spawn("h" .. i, function()
              local r, e = vault.http.request{ url = url .. "?i=" .. i }
              results[i] = r and r.body or e.kind
              n = n + 1
              if n == 50 then vault.task.wake(me) end
            end)
          end
          if n < 50 then vault.task.suspend(30) end
          return results
        """ % lua_str(self.srv.url("/slow"))
        t0 = time.time()
        done = {}
        th = threading.Thread(target=lambda: done.update(out=self.e.eval(chunk, timeout=60)))
        th.start()
        time.sleep(0.4)
        t1 = time.time()
        self.assertEqual(self.e.eval("return 'alive'", timeout=5), "alive")
        self.assertLess(time.time() - t1, 1.0)
        th.join(60)
        self.assertEqual(done["out"], ["n=%d" % i for i in range(1, 51)])
        self.assertGreaterEqual(self.srv.max_active, 45)
        self.assertLess(time.time() - t0, 8)


class ArchivingMeanwhileTest(HttpTestBase):
    def test_a_source_archives_while_fifty_requests_are_in_flight(self):
        release = threading.Event()

        def held(req):
            release.wait(30)
            return "released " + req.query["i"]
        self.srv.route("GET", "/held", held)
        imap = FakeImap({"INBOX": [message(i) for i in range(1, 201)]})
        try:
            chunk = """
              local url, results, n = %s, {}, 0
              local me = vault.task.current()
              for i = 1, 50 do
                vault.task.spawn("h" .. i, function()
                  local r, e = vault.http.request{ url = url .. "?i=" .. i, timeout = 40 }
                  results[i] = r and r.body or e.message
                  n = n + 1
                  if n == 50 then vault.task.wake(me) end
                end)
              end
              if n < 50 then vault.task.suspend(45) end
              return results
            """ % lua_str(self.srv.url("/held"))
            done = {}
            th = threading.Thread(target=lambda: done.update(out=self.e.eval(chunk, timeout=60)))
            th.start()
            deadline = time.time() + 10
            while self.srv.active < 50 and time.time() < deadline:
                time.sleep(0.05)
            self.assertEqual(self.srv.active, 50)
            self.e.write_source("mail", source_file(port=imap.port, username=imap.user,
                                                    password=imap.password, tls="false"))
            self.e.reload()
            db = os.path.join(self.e.data, "archive.db")
            archived = 0
            deadline = time.time() + 30
            while archived < 200 and time.time() < deadline:
                try:
                    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
                    archived = con.execute("SELECT count(*) FROM locations").fetchone()[0]
                    con.close()
                except sqlite3.Error:
                    pass
                time.sleep(0.1)
            self.assertEqual(archived, 200)
            self.assertEqual(self.srv.active, 50)     # all still waiting for their answer
            release.set()
            th.join(30)
            self.assertEqual(done["out"], ["released %d" % i for i in range(1, 51)])
        finally:
            release.set()
            imap.close()


class ErrorKindTest(HttpTestBase):
    def test_connection_refused(self):
        port = free_port()
        e = self.request("url = %s" % lua_str("http://127.0.0.1:%d/x" % port))["e"]
        self.assertEqual(e["kind"], "refused")
        self.assertIn("127.0.0.1:%d" % port, e["message"])
        self.assertIn("Connection refused", e["message"])

    def test_unresolvable_host(self):
        e = self.request('url = "https://no-such-host.invalid/path"')["e"]
        self.assertEqual(e["kind"], "dns")
        self.assertIn("no-such-host.invalid:443", e["message"])

    def test_server_closing_without_answer(self):
        def hangup(req):
            return None
        self.srv.route("GET", "/hangup", hangup)
        e = self.request("url = %s" % lua_str(self.srv.url("/hangup")))["e"]
        self.assertEqual(e["kind"], "protocol")
        self.assertIn("closed the connection without answering", e["message"])

    def test_only_in_a_task(self):
        r = self.e.eval("return coroutine.wrap(function() return vault.http.request{ url = %s } end)()"
                        % lua_str(self.srv.url("/")), json_out=False, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("vault.http.request must run in a task", r.stderr)

    def test_not_where_the_task_cannot_yield(self):
        r = self.e.eval("local t = {2, 1} table.sort(t, function(a, b) "
                        "vault.http.request{ url = %s } return a < b end) return t"
                        % lua_str(self.srv.url("/")), json_out=False, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot wait here", r.stderr)
        self.assertEqual(self.srv.requests, [])
        self.assertEqual(self.e.eval("return vault.task.count()"), 1)

    def test_bad_arguments_are_errors(self):
        url = lua_str(self.srv.url("/"))
        cases = {
            "url = %s, timout = 3" % url: "unknown field timout",
            "url = %s, headers = { ['X-A'] = 'a\\r\\nX-Injected: 1' }" % url: "line break",
            "url = %s, headers = { ['Bad Name'] = 'v' }" % url: "not a valid HTTP header name",
            "url = %s, method = 'GE T'" % url: "is not an HTTP method",
            "url = %s, timeout = -1" % url: "timeout must be",
            "url = %s, body = {}" % url: "body must be a string",
            "method = 'GET'": "url is required",
            "url = %s, method = 'HEAD', body = 'x'" % url: "a HEAD request has no body",
        }
        for fields, want in cases.items():
            r = self.e.eval("return vault.http.request{ %s }" % fields, json_out=False, check=False)
            self.assertEqual(r.returncode, 1, fields)
            self.assertIn(want, r.stderr, fields)
        self.assertEqual(self.srv.requests, [])

    def test_secrets_of_urls_never_in_log_or_errors(self):
        secrets = ["pa55w0rd", "t0k3n-value", "s3cr3t-path", "B3arer-xyz", "alice-user"]
        self.srv.route("GET", "/*", lambda req: Response(500, {}, b"nope"))
        self.srv.route("GET", "/jump", lambda req: redirect(
            "http://alice-user:pa55w0rd@127.0.0.1:%d/s3cr3t-path?access_token=t0k3n-value" % dead))
        dead = free_port()
        urls = [
            "http://alice-user:pa55w0rd@127.0.0.1:%d/s3cr3t-path?access_token=t0k3n-value" % dead,
            "http://alice-user:pa55w0rd@no-such-host.invalid/s3cr3t-path?access_token=t0k3n-value",
            self.srv.url("/s3cr3t-path?access_token=t0k3n-value").replace(
                "http://", "http://alice-user:pa55w0rd@"),
            self.srv.url("/jump?access_token=t0k3n-value"),
        ]
        texts = []
        outs = []
        for url in urls:
            out = self.request('url = %s, timeout = 5, headers = { Authorization = "Bearer B3arer-xyz" }'
                               % lua_str(url))
            texts.append(json.dumps(out))
            outs.append(out)
        self.assertEqual([o["e"]["kind"] if "e" in o else o["r"]["status"] for o in outs],
                         ["refused", "dns", 500, "refused"])
        # after a redirect the error names the server that failed
        self.assertIn("127.0.0.1:%d" % dead, outs[3]["e"]["message"])
        # the request to the server itself did carry them (so they were really used)
        sent = [r for r in self.srv.requests if r.path == "/s3cr3t-path"]
        self.assertEqual(sent[0].header("Authorization"), "Bearer B3arer-xyz")
        self.assertEqual(sent[0].query["access_token"], "t0k3n-value")
        # a bad argument's error does not repeat the URL either
        r = self.e.eval("return vault.http.request{ url = %s, headers = { ['X'] = 'a\\nb' } }"
                        % lua_str(urls[0]), json_out=False, check=False)
        texts.append(r.stdout + r.stderr)
        log = self.e.log()
        self.assertIn("http GET 127.0.0.1:%d failed kind=refused" % dead, log)
        for s in secrets:
            self.assertNotIn(s, log)
            for t in texts:
                self.assertNotIn(s, t)


class TlsTest(HttpTestBase):
    tls = True

    def setUp(self):
        super().setUp()
        self.srv.route("GET", "/hello", lambda req: "hello over tls")

    def test_self_signed_refused_by_default(self):
        e = self.request("url = %s" % lua_str(self.srv.url("/hello")))["e"]
        self.assertEqual(e["kind"], "certificate")
        self.assertIn("certificate of 127.0.0.1:%d rejected" % self.srv.port, e["message"])
        self.assertIn("self-signed", e["message"])
        self.assertIn("ca_file", e["message"])
        self.assertIn("allow_insecure_cert", e["message"])
        self.assertEqual(self.srv.requests, [])

    def test_ca_file_accepts_it(self):
        for host in ("127.0.0.1", "localhost"):
            r = self.request("url = %s, ca_file = %s" % (lua_str(self.srv.url("/hello", host=host)),
                                                         lua_str(self.srv.cert_path)))["r"]
            self.assertEqual((r["status"], r["body"]), (200, "hello over tls"))

    def test_missing_ca_file_is_a_config_error(self):
        e = self.request("url = %s, ca_file = '/nonexistent/ca.pem'" % lua_str(self.srv.url("/hello")))["e"]
        self.assertEqual(e["kind"], "config")
        self.assertIn("/nonexistent/ca.pem", e["message"])

    def test_allow_insecure_cert_accepts_it_and_logs_the_fingerprint(self):
        for _ in range(2):
            r = self.request("url = %s, allow_insecure_cert = true" % lua_str(self.srv.url("/hello")))["r"]
            self.assertEqual(r["body"], "hello over tls")
        lines = self.e.log_lines("accepting the certificate of 127.0.0.1:%d" % self.srv.port)
        self.assertEqual(len(lines), 1, self.e.log())      # once per host:port
        self.assertIn("self-signed", lines[0])
        self.assertIn("allow_insecure_cert = true", lines[0])
        self.assertIn(self.srv.cert_sha256_colons, lines[0])

    def test_plain_http_to_a_tls_port_and_tls_to_a_plain_port(self):
        plain = HttpServer().start()
        try:
            plain.route("GET", "/x", lambda req: "plain")
            e = self.request("url = %s" % lua_str(plain.url("/x").replace("http://", "https://")))["e"]
            self.assertEqual(e["kind"], "tls")
            self.assertIn("127.0.0.1:%d" % plain.port, e["message"])
        finally:
            plain.stop()
        e = self.request("url = %s, timeout = 3" % lua_str(self.srv.url("/hello").replace("https://", "http://")))["e"]
        self.assertIn(e["kind"], ("protocol", "timeout"))


class OldTlsTest(unittest.TestCase):
    def test_tls_below_1_2_is_refused(self):
        try:
            srv = HttpServer(tls=True, tls_max_version=ssl.TLSVersion.TLSv1_1)
        except (ssl.SSLError, ValueError) as exc:
            self.skipTest("this OpenSSL cannot serve TLS 1.1: %s" % exc)
        srv.start()
        srv.route("GET", "/old", lambda req: "old tls")
        # An OpenSSL set-up that would speak TLS 1.0 and 1.1 (as some
        # systems' do): the engine's own minimum must refuse them anyway.
        conf = os.path.join(srv.folder, "openssl-old.cnf")
        with open(conf, "w") as f:
            f.write("openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\n"
                    "system_default = sys\n[sys]\nMinProtocol = TLSv1\n"
                    "CipherString = DEFAULT:@SECLEVEL=0\n")
        e = Engine(env={"OPENSSL_CONF": conf})
        try:
            e.start()
            out = e.eval("local r, e = vault.http.request{ url = %s, allow_insecure_cert = true } "
                         "return { r = r, e = e }" % lua_str(srv.url("/old")))
            self.assertNotIn("r", out)
            self.assertEqual(out["e"]["kind"], "tls")
            self.assertIn("127.0.0.1:%d" % srv.port, out["e"]["message"])
            self.assertEqual(e.stop(), 0)
        finally:
            e.cleanup()
            srv.stop()


class CancelTest(HttpTestBase):
    def test_sigint_cancels_a_waiting_request(self):
        closed = threading.Event()
        started = threading.Event()

        def silent(req):
            started.set()
            if req.wait_closed(20):
                closed.set()
            return None
        self.srv.route("GET", "/silent", silent)
        self.srv.route("GET", "/after", lambda req: "still fine")
        p = subprocess.Popen([vault.BIN, "eval", "--data", self.e.data,
                              "return vault.http.request{ url = %s, timeout = 60 }"
                              % lua_str(self.srv.url("/silent"))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertTrue(started.wait(10))
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
        self.assertEqual(p.returncode, 1, out + err)
        self.assertTrue(closed.wait(5), "the engine did not close the cancelled transfer")
        self.assertEqual(self.e.eval("return vault.http.request{ url = %s }.body"
                                     % lua_str(self.srv.url("/after"))), "still fine")

    def test_cancelled_task_ends_its_requests(self):
        closed = []
        lock = threading.Lock()

        def silent(req):
            if req.wait_closed(20):
                with lock:
                    closed.append(req.query["i"])
            return None
        self.srv.route("GET", "/silent", silent)
        out = self.e.eval("""
          local hs = {}
          for i = 1, 5 do
            hs[i] = vault.task.spawn("w" .. i, function()
              return vault.http.request{ url = %s .. "?i=" .. i } end)
          end
          vault.sleep(0.5)
          for _, h in ipairs(hs) do vault.task.cancel(h) end
          vault.sleep(0.5)
          return vault.task.count()
        """ % lua_str(self.srv.url("/silent")))
        self.assertEqual(out, 1)    # only the chunk itself
        deadline = time.time() + 5
        while len(closed) < 5 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(sorted(closed), ["1", "2", "3", "4", "5"])

    def test_engine_stops_with_requests_in_flight(self):
        self.srv.route("GET", "/silent", lambda req: (req.wait_closed(20), None)[1])
        p = subprocess.Popen([vault.BIN, "eval", "--data", self.e.data, """
            for i = 1, 3 do vault.task.spawn("bg" .. i, function()
              vault.http.request{ url = %s, timeout = 60 } end) end
            return vault.http.request{ url = %s, timeout = 60 }"""
                              % (lua_str(self.srv.url("/silent")), lua_str(self.srv.url("/silent")))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 10
        while len(self.srv.requests_to("/silent")) < 4 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(len(self.srv.requests_to("/silent")), 4)
        t0 = time.time()
        self.e.signal(signal.SIGTERM)
        self.assertEqual(self.e.wait(timeout=15), 0, self.e.stderr)
        self.assertLess(time.time() - t0, 10)
        p.communicate(timeout=10)


class OfflineTest(unittest.TestCase):
    def test_offline_repl_says_it_needs_the_engine(self):
        e = Engine()
        try:
            e.start()
            e.stop()
            r = vault.run("repl", "--data", e.data, "--offline",
                          input='vault.http.request{ url = "http://127.0.0.1/" }\n'
                                'vault.http.urlencode("a b")\n',
                          env={"TERM": "dumb"})
            self.assertIn("vault.http.request needs the running engine", r.stdout + r.stderr)
            self.assertIn("a%20b", r.stdout)
        finally:
            e.cleanup()


if __name__ == "__main__":
    unittest.main()
