"""One complete import under valgrind (memcheck), in the normal build: a
Dovecot mailbox of a few hundred messages over TLS with `run --once`, then
`verify` and a `search` of what it archived. Any memory error, and any
leak (definite, indirect or possible), fails the test; memory still
reachable at exit (GLib's and OpenSSL's one-time tables) does not.
Skipped when valgrind is absent, and in a sanitizer build (ASan and
valgrind do not mix)."""
import os
import re
import shutil
import subprocess
import unittest

import dovecot
import mailgen
import vault
from vault import Engine, source_file

VALGRIND_EXIT = 99
SUPPRESSIONS = os.path.join(vault.SOURCE_DIR, "tests", "valgrind.supp")


def sanitized_build():
    """True when the binary was built with ASan (its runtime is linked in)."""
    r = subprocess.run(["nm", "-D", "--undefined-only", vault.BIN], capture_output=True,
                       text=True)
    if r.returncode == 0 and "__asan_" in r.stdout:
        return True
    cache = os.path.join(os.path.dirname(os.path.abspath(vault.BIN)), "CMakeCache.txt")
    if os.path.exists(cache):
        with open(cache) as f:
            if re.search(r"^EMAILVAULT_(SANITIZE|FUZZ):BOOL=ON$", f.read(), re.M):
                return True
    return False


class ValgrindTest(unittest.TestCase):
    def setUp(self):
        if not shutil.which("valgrind"):
            self.skipTest("valgrind is not installed")
        if sanitized_build():
            self.skipTest("a sanitizer build: valgrind runs on the normal build")
        self.d = dovecot.Dovecot().start()
        self.e = Engine(log_level="info")

    def tearDown(self):
        self.e.cleanup()
        self.d.stop()

    def valgrind(self, name, *args, timeout=900):
        log = os.path.join(self.e.tmp, "valgrind-%s.log" % name)
        cmd = ["valgrind", "--tool=memcheck", "--error-exitcode=%d" % VALGRIND_EXIT,
               "--leak-check=full", "--show-leak-kinds=definite,indirect,possible",
               "--errors-for-leak-kinds=definite,indirect,possible",
               "--child-silent-after-fork=yes", "--num-callers=30",
               "--log-file=" + log]
        if os.path.exists(SUPPRESSIONS):
            cmd.append("--suppressions=" + SUPPRESSIONS)
        p = subprocess.run(cmd + [vault.BIN, *args], capture_output=True, text=True,
                           timeout=timeout)
        with open(log) as f:
            report = f.read()
        self.assertNotEqual(p.returncode, VALGRIND_EXIT,
                            "valgrind found errors in `emailvault %s`:\n%s" % (name, report[-20000:]))
        self.assertIn("ERROR SUMMARY: 0 errors", report)
        return p

    def test_complete_import_is_clean(self):
        box = mailgen.build_mailbox({"INBOX": 150, "Archive/2024": 100}, seed=3,
                                    duplicates=10, max_size=200000)
        self.d.fill(box)
        e = self.e
        e.write_source("work", source_file(port=self.d.tls_port, username=self.d.user,
                                           password=self.d.password,
                                           ca_file='"%s"' % self.d.cert_path))
        p = self.valgrind("run", "run", "--sources", e.sources, "--data", e.data,
                          "--log", e.log_path, "--once")
        self.assertEqual(p.returncode, 0, e.log()[-3000:])
        self.assertTrue(e.log_has(r"\[work\] import complete"), e.log()[-3000:])
        n = sum(len(v) for v in box.values())

        p = self.valgrind("verify", "verify", "--data", e.data)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        m = re.search(r"(\d+) messages checked .*: 0 missing, 0 corrupt", p.stdout)
        self.assertTrue(m, p.stdout)
        self.assertGreater(int(m.group(1)), 200)
        self.assertLessEqual(int(m.group(1)), n)

        p = self.valgrind("search", "search", "--data", e.data, "--limit", "5", "--json", "a")
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
