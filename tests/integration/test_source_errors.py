"""Sources against a real Dovecot: each failure shows as the source's error
with its kind, and on_error (or the default policy) governs the retry."""
import time
import unittest

import dovecot
from vault import Engine, source_file


class SourceErrorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = dovecot.Dovecot().start()
        cls.d.create_folders(["Archive", "Trash"])

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def setUp(self):
        self.e = Engine()

    def tearDown(self):
        self.e.cleanup()

    def src(self, **kw):
        args = dict(port=self.d.tls_port, username=self.d.user, password=self.d.password,
                    ca_file='"%s"' % self.d.cert_path)
        args.update(kw)
        return source_file(**args)

    def wait_status(self, sid, status, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.e.sources_by_id()[sid]
            if s["status"] == status:
                return s
            time.sleep(0.1)
        raise AssertionError("%s never reached %s: %s" % (sid, status, s))

    def test_each_error_kind_on_its_source(self):
        e = self.e
        e.write_source("good", self.src())
        e.write_source("auth", self.src(password="wrong-password-123"))
        e.write_source("cert", self.src(ca_file="nil"))
        e.write_source("refused", self.src(port=dovecot.free_ports(1)[0]))
        e.write_source("tls", self.src(port=self.d.plain_port))
        e.start()
        auth = self.wait_status("auth", "error")
        self.assertEqual(auth["error"]["kind"], "auth")
        self.assertIn("App Password", auth["error"]["message"])
        self.assertIsNone(auth["error"].get("next_retry"))      # never retried by itself
        cert = self.wait_status("cert", "error")
        self.assertEqual(cert["error"]["kind"], "certificate")
        self.assertIn("self-signed", cert["error"]["message"])
        self.assertIn("allow_insecure_cert", cert["error"]["message"])
        refused = self.wait_status("refused", "error")
        self.assertEqual(refused["error"]["kind"], "refused")
        self.assertGreater(refused["error"]["next_retry"], refused["error"]["at"] + 20)
        tls = self.wait_status("tls", "error")
        self.assertEqual(tls["error"]["kind"], "tls")
        good = self.e.sources_by_id()["good"]
        self.assertIn(good["status"], ("importing", "active"))   # an empty account imports at once
        self.assertIsNone(good.get("error"))
        e.wait_for_log(r"\[good\] folders to archive count=\d+")
        e.wait_for_log(r"\[auth\] source failed .*kind=auth")
        time.sleep(1)
        self.assertEqual(self.e.sources_by_id()["auth"]["error"]["attempt"], 1)
        self.assertNotIn("wrong-password-123", e.log())

    def test_on_error_governs_retry(self):
        e = self.e
        port = dovecot.free_ports(1)[0]
        e.write_source("fast", self.src(port=port, on_error="function(err, n) return 0.2 end"))
        e.write_source("never", self.src(port=port, on_error="function(err, n) return nil end"))
        e.write_source("bad", self.src(port=port, on_error="function(err, n) error('oops') end"))
        e.write_source("loop", self.src(port=port, on_error="function(err, n) while true do end end"))
        e.write_source("kinds", self.src(port=port, on_error=(
            "function(err, n) if err.kind == 'refused' and n < 3 then return 0.1 end return nil end")))
        e.start()
        e.wait_for_log(r"\[fast\] source failed .*attempt=4")
        time.sleep(1)
        s = e.sources_by_id()
        self.assertEqual(s["never"]["error"]["attempt"], 1)
        self.assertIsNone(s["never"]["error"].get("next_retry"))
        self.assertEqual(s["bad"]["error"]["kind"], "hook")
        self.assertIn("oops", s["bad"]["error"]["message"])
        self.assertEqual(s["loop"]["error"]["kind"], "hook")
        self.assertIn("instruction budget", s["loop"]["error"]["message"])
        self.assertEqual(s["kinds"]["error"]["attempt"], 3)
        self.assertEqual(s["kinds"]["error"]["kind"], "refused")
        # the engine itself is fine
        self.assertEqual(e.eval("return 1"), 1)

    def test_folder_patterns(self):
        r = self.e.start().eval(
            'local r = require "runner"\n'
            'local fs = {{name="INBOX", delimiter="/", selectable=true},'
            ' {name="Archive", delimiter="/", selectable=true},'
            ' {name="Archive/2023", delimiter="/", selectable=true},'
            ' {name="Archive/2023/Q1", delimiter="/", selectable=true},'
            ' {name="Trash", delimiter="/", selectable=true},'
            ' {name="Parent", delimiter="/", selectable=false}}\n'
            'local function names(spec) local out = {} for _, f in ipairs(r.select_folders(fs, spec)) do'
            ' out[#out+1] = f.name end return table.concat(out, ",") end\n'
            'return {all = names({}), ex = names({exclude={"Trash"}}),'
            ' pct = names({include={"Archive/%"}}), star = names({include={"Archive*"}, exclude={"*Q1"}})}')
        self.assertEqual(r["all"], "INBOX,Archive,Archive/2023,Archive/2023/Q1,Trash")
        self.assertEqual(r["ex"], "INBOX,Archive,Archive/2023,Archive/2023/Q1")
        self.assertEqual(r["pct"], "Archive/2023")
        self.assertEqual(r["star"], "Archive,Archive/2023")


if __name__ == "__main__":
    unittest.main(verbosity=2)
