"""The shipped alerts example (sources.d/emailvault.lua.example,
docs/alerts.md) against a local webhook receiver: one alert when a source
enters error, one when it recovers, at most one per source per interval
however it flaps (the last one says where it ended up), Slack-style JSON
and ntfy-style text, with the source's id, name, kind and error, and never
its password, even when the server quotes it back."""
import json
import os
import re
import threading
import time
import unittest

import dovecot
import vault
from fakeimap import FakeImap, message
from httpserver import HttpServer
from vault import Engine, source_file

INTERVAL = 3


def example(interval=INTERVAL):
    with open(os.path.join(vault.SOURCE_DIR, "sources.d", "emailvault.lua.example")) as f:
        text = f.read()
    out = text.replace("local INTERVAL = 900 ", "local INTERVAL = %d " % interval)
    assert "local INTERVAL = %d " % interval in out, "the example's INTERVAL line changed: update this test"
    return out


class Receiver:
    def __init__(self):
        self.srv = HttpServer().start()
        self.lock = threading.Lock()
        self.json, self.text = [], []
        self.srv.route("POST", "/slack", lambda req: self.keep(self.json, req, json.loads(req.body)["text"]))
        self.srv.route("POST", "/ntfy", lambda req: self.keep(self.text, req, req.body.decode()))

    def keep(self, into, req, text):
        with self.lock:
            into.append({"at": req.time, "text": text, "headers": dict(req.header_list()),
                         "raw": req.body.decode("utf-8", "replace")})
        return "ok"

    def alerts(self):
        with self.lock:
            return list(self.json)

    def wait(self, count, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.alerts()) >= count and len(self.text) >= count:
                return self.alerts()
            time.sleep(0.05)
        raise AssertionError("%d alerts, wanted %d: %r" % (len(self.alerts()), count, self.alerts()))


class DocsTest(unittest.TestCase):
    def test_docs_show_the_example_as_it_is(self):
        with open(os.path.join(vault.SOURCE_DIR, "docs", "alerts.md")) as f:
            doc = f.read()
        blocks = re.findall(r"```lua\n(.*?)```", doc, re.S)
        self.assertIn(example(900), blocks, "docs/alerts.md does not show sources.d/emailvault.lua.example")


class AlertsBase(unittest.TestCase):
    def setUp(self):
        self.rx = Receiver()
        self.e = Engine(log_level="info", env={
            "no_proxy": "127.0.0.1,localhost",
            "EMAILVAULT_ALERT_JSON_URL": self.rx.srv.url("/slack"),
            "EMAILVAULT_ALERT_TEXT_URL": self.rx.srv.url("/ntfy"),
        })
        self.e.write_config(example())
        self.servers = []

    def tearDown(self):
        try:
            self.assertEqual(self.e.stop(), 0, getattr(self.e, "stderr", ""))
        finally:
            self.e.cleanup()
            self.rx.srv.stop()
            for s in self.servers:
                s.close()

    def assertNoSecret(self, password):
        self.assertNotIn(password, self.e.log())
        for a in self.rx.alerts() + self.rx.text:
            self.assertNotIn(password, a["raw"])
            self.assertNotIn(password, json.dumps(a["headers"]))

    def assertSpaced(self, alerts):
        for a, b in zip(alerts, alerts[1:]):
            self.assertGreater(b["at"] - a["at"], INTERVAL - 0.5, "two alerts within the interval: %r" % alerts)


class AlertsTest(AlertsBase):
    def test_refused_source_one_error_alert_then_recovery(self):
        password = "Alert-pw-refused-71"
        self.e.write_source("work", source_file(port=1, tls="false", password=password, name='"Work Mail"',
                                                on_error="function() return 0.3 end"))
        self.e.start()
        first = self.rx.wait(1)[0]
        self.assertTrue(first["text"].startswith("emailvault: work failed: "), first["text"])
        self.assertIn("source work (Work Mail, imap) is in error: refused: connection refused by 127.0.0.1:1",
                      first["text"])
        ntfy = self.rx.text[0]
        self.assertEqual(ntfy["headers"]["Title"], "emailvault: work failed")
        self.assertEqual(ntfy["headers"]["Priority"], "high")
        self.assertTrue(ntfy["headers"]["Content-Type"].startswith("text/plain"))
        self.assertIn("is in error: refused", ntfy["text"])
        # it keeps failing every 0.3 s: still the one alert, intervals later
        self.e.wait_for_log(r"\[work\] source failed", count=10, timeout=20)
        time.sleep(INTERVAL + 1)
        self.assertEqual(len(self.rx.alerts()), 1, self.rx.alerts())
        # fixed: a recovery alert
        srv = FakeImap({"INBOX": [message(1)]})
        self.servers.append(srv)
        self.e.write_source("work", source_file(port=srv.port, username=srv.user, password=srv.password,
                                                tls="false", name='"Work Mail"'))
        self.e.reload()
        alerts = self.rx.wait(2)
        self.assertEqual(alerts[1]["text"], "emailvault: work recovered: source work (Work Mail, imap) recovered: importing")
        self.assertEqual(self.rx.text[1]["headers"]["Title"], "emailvault: work recovered")
        time.sleep(1)
        self.assertEqual(len(self.rx.alerts()), 2)
        self.assertNoSecret(password)

    def test_flapping_source_one_alert_per_interval_and_the_last_state(self):
        srv = FakeImap({"INBOX": [message(1)]})
        self.servers.append(srv)
        broken = [True]
        # logs in, then EXAMINE fails (and quotes the password back): importing -> error
        srv.examine_no = lambda folder: ("[SERVERBUG] no INBOX for " + srv.password) if broken[0] else None
        self.e.write_source("flappy", source_file(port=srv.port, username=srv.user, password=srv.password,
                                                  tls="false", on_error="function() return 0.2 end"))
        self.e.start()
        t0 = time.time()
        time.sleep(2 * INTERVAL + 1)
        flips = len(self.e.log_lines(r"\[flappy\] status .*to=error"))
        self.assertGreater(flips, 10, "the source did not flap")
        alerts = self.rx.alerts()
        self.assertIn("emailvault: flappy failed", alerts[0]["text"])
        self.assertIn("is in error: protocol:", alerts[0]["text"])
        self.assertIn("no INBOX for ***", alerts[0]["text"])        # the server's words, not the password
        self.assertLessEqual(len(alerts), (time.time() - t0) // INTERVAL + 1, alerts)
        self.assertSpaced(alerts)
        # the error as the engine keeps it, not only as it prints it
        self.assertIs(self.e.eval(
            "for _ = 1, 100 do local e = vault.status('flappy').error if e then "
            "return e.message:find('no INBOX for', 1, true) ~= nil and not e.message:find(%s, 1, true) end "
            "vault.sleep(0.05) end return 'no error seen'" % json.dumps(srv.password)), True)
        # fixed: whatever the last alert said, the last one says it recovered
        broken[0] = False
        deadline = time.time() + 3 * INTERVAL + 5
        while time.time() < deadline:
            alerts = self.rx.alerts()
            if "recovered" in alerts[-1]["text"] and self.e.eval("return vault.status('flappy').status") == "active":
                break
            time.sleep(0.1)
        self.assertIn("emailvault: flappy recovered", alerts[-1]["text"], alerts)
        time.sleep(INTERVAL + 1)
        alerts = self.rx.alerts()
        self.assertIn("recovered", alerts[-1]["text"])
        self.assertSpaced(alerts)
        self.assertEqual(len(self.rx.text), len(alerts))
        self.assertNoSecret(srv.password)
        # the source's status and archive.db do not show it either
        self.assertNotIn(srv.password, json.dumps(self.e.eval("return vault.sources()")))


class DovecotAlertsTest(AlertsBase):
    """The same example against a real server: a wrong password (kind auth,
    never retried by itself) alerts once; the fixed file recovers."""

    def test_wrong_password_then_fixed(self):
        d = dovecot.Dovecot().start()
        self.addCleanup(d.stop)
        wrong = "Wrong-pw-for-dovecot-58"
        src = lambda pw: source_file(port=d.plain_port, username=d.user, password=pw, tls='"starttls"',
                                     ca_file='"%s"' % d.cert_path, name='"Home"')
        self.e.write_source("home", src(wrong))
        self.e.start()
        first = self.rx.wait(1)[0]
        self.assertTrue(first["text"].startswith("emailvault: home failed: source home (Home, imap) is in error: auth: "),
                        first["text"])
        self.assertIn("App Password", first["text"])
        self.assertEqual(self.rx.text[0]["headers"]["Priority"], "high")
        self.e.write_source("home", src(d.password))
        self.e.reload()
        alerts = self.rx.wait(2, timeout=INTERVAL + 20)
        self.assertRegex(alerts[1]["text"], r"^emailvault: home recovered: source home \(Home, imap\) recovered: (importing|active)$")
        self.assertEqual(self.rx.text[1]["headers"]["Title"], "emailvault: home recovered")
        self.assertEqual(self.rx.text[1]["headers"]["Priority"], "default")
        # the first alert went out at once; the recovery only after the interval
        self.assertSpaced(alerts)
        self.assertNoSecret(wrong)
        self.assertNoSecret(d.password)


if __name__ == "__main__":
    unittest.main()
