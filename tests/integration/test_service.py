"""Running as a service, tested without systemd: sd_notify readiness to a
datagram socket of our own as $NOTIFY_SOCKET, SIGUSR1 reopening a --log
file, journal-style lines when stderr is the journal ($JOURNAL_STREAM),
`cmake --install` and the units it installs (checked by systemd-analyze
where it exists), and the unit's system call filter against what an
import really calls (strace, where it works)."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import uuid

import vault
from vault import Engine, source_file


def recv_state(sock, timeout=10):
    sock.settimeout(timeout)
    data = sock.recv(4096)
    return data.decode()


class NotifyTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ev-notify-")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def tearDown(self):
        self.sock.close()
        if self.e:
            self.e.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    e = None

    def start(self, address):
        self.e = Engine(tmp=os.path.join(self.tmp, "e"), env={"NOTIFY_SOCKET": address})
        self.e.write_source("a", source_file(name='"A"'))
        self.e.start(wait=False)

    def test_ready_reload_stopping(self):
        path = os.path.join(self.tmp, "notify.sock")
        self.sock.bind(path)
        self.start(path)
        self.assertEqual(recv_state(self.sock), "READY=1")
        # ready means ready: the control socket answers and sources are loaded
        self.assertEqual(sorted(self.e.sources_by_id()), ["a"])
        self.assertTrue(self.e.log_has("sources reloaded"))

        n = len(self.e.log_lines("sources reloaded"))
        self.e.write_source("b", source_file(name='"B"'))
        self.e.signal(signal.SIGHUP)
        state = recv_state(self.sock)
        m = re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=(\d+)", state)
        self.assertTrue(m, state)
        now = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
        self.assertLess(abs(int(m.group(1)) - now), 30e6)
        self.assertEqual(recv_state(self.sock), "READY=1")
        # READY=1 comes after the reload, not before
        self.assertEqual(len(self.e.log_lines("sources reloaded")), n + 1)
        self.assertEqual(sorted(self.e.sources_by_id()), ["a", "b"])

        self.e.signal(signal.SIGTERM)
        self.assertEqual(recv_state(self.sock), "STOPPING=1")
        self.assertEqual(self.e.wait(30), 0)

    def test_abstract_socket(self):
        name = "ev-test-" + uuid.uuid4().hex
        self.sock.bind("\0" + name)
        self.start("@" + name)
        self.assertEqual(recv_state(self.sock), "READY=1")
        self.e.signal(signal.SIGTERM)
        self.assertEqual(recv_state(self.sock), "STOPPING=1")
        self.assertEqual(self.e.wait(30), 0)

    def test_no_listener_is_a_warning_not_a_failure(self):
        self.start(os.path.join(self.tmp, "nobody-listens.sock"))
        self.e.wait_for_socket()
        self.e.wait_for_log(r"WARN .*cannot notify the service manager")
        self.assertEqual(sorted(self.e.sources_by_id()), ["a"])


class LogReopenTest(unittest.TestCase):
    def setUp(self):
        self.e = Engine()

    def tearDown(self):
        self.e.cleanup()

    def test_sigusr1_reopens_the_log_file(self):
        e = self.e
        e.write_source("a", source_file())
        e.start()
        rotated = e.log_path + ".1"
        os.rename(e.log_path, rotated)       # what logrotate does
        e.signal(signal.SIGUSR1)
        e.wait_for_log(r"INFO .*SIGUSR1: log file reopened path=")
        self.assertIsNone(e.proc.poll(), "SIGUSR1 ended the engine")
        self.assertEqual(os.stat(e.log_path).st_mode & 0o777, 0o600)
        e.eval("vault.log.info('after rotation')")  # still answers
        e.wait_for_log("after rotation")
        with open(rotated) as f:
            old = f.read()
        self.assertIn("sources reloaded", old)
        self.assertNotIn("after rotation", old)
        self.assertNotIn("SIGUSR1", old)
        # a reopen is not a reload
        self.assertEqual(len(e.log_lines("sources reloaded")), 0)
        self.assertEqual(e.stop(), 0)


STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO |WARN |ERROR) \[")


class JournalTest(unittest.TestCase):
    """When stderr is the journal the lines carry a syslog priority and no
    time; anywhere else they keep their time."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ev-journal-")
        self.data = os.path.join(self.tmp, "data")
        self.sources = os.path.join(self.tmp, "sources.d")
        os.makedirs(self.sources)
        os.makedirs(self.data, mode=0o755)
        os.chmod(self.data, 0o755)          # for a WARN line
        with open(os.path.join(self.sources, "a.lua"), "w") as f:
            f.write(source_file())

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_engine(self, journal_of=None, log_file=None):
        """Runs the engine to the first reload with stderr to a file;
        JOURNAL_STREAM names JOURNAL_OF's device:inode (stderr when
        'stderr'). Returns the stderr text and the --log text."""
        err_path = os.path.join(self.tmp, "stderr")
        other = os.path.join(self.tmp, "other")
        open(other, "w").close()
        env = dict(os.environ)
        args = [vault.BIN, "run", "--sources", self.sources, "--data", self.data,
                "--log-level", "debug"]
        if log_file:
            args += ["--log", log_file]
        with open(err_path, "w") as err:
            if journal_of:
                st = os.fstat(err.fileno()) if journal_of == "stderr" else os.stat(other)
                env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
            p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
            try:
                deadline = time.time() + 20
                target = log_file or err_path
                while time.time() < deadline:
                    if os.path.exists(target):
                        with open(target) as f:
                            if "sources reloaded" in f.read():
                                break
                    if p.poll() is not None:
                        with open(err_path) as f:
                            self.fail("the engine exited: " + f.read())
                    time.sleep(0.05)
                p.send_signal(signal.SIGTERM)
                self.assertEqual(p.wait(30), 0)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        with open(err_path) as f:
            err_text = f.read()
        log_text = ""
        if log_file:
            with open(log_file) as f:
                log_text = f.read()
        return err_text, log_text

    def test_journal_lines_have_priorities_and_no_time(self):
        text, _ = self.run_engine(journal_of="stderr")
        lines = text.splitlines()
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^<[3467]>(DEBUG|INFO |WARN |ERROR) \[[^\]]+\] \S", line)
            self.assertNotRegex(line, r"^<\d>\d{4}-")
        prio = {"DEBUG": "7", "INFO": "6", "WARN": "4", "ERROR": "3"}
        for line in lines:
            level = line[3:8].strip()
            self.assertEqual(line[1], prio[level], line)
        self.assertTrue(any(l.startswith("<4>WARN  [-] data folder") for l in lines), text)
        self.assertTrue(any(l.startswith("<6>INFO  [-] sources reloaded") for l in lines), text)
        self.assertTrue(any(l.startswith("<7>DEBUG") for l in lines), text)

    def test_stderr_elsewhere_keeps_the_time(self):
        # JOURNAL_STREAM inherited from a parent whose stderr was the journal
        text, _ = self.run_engine(journal_of="other")
        lines = text.splitlines()
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, STAMP, line)

    def test_log_file_keeps_the_time(self):
        log = os.path.join(self.tmp, "engine.log")
        err, text = self.run_engine(journal_of="stderr", log_file=log)
        lines = text.splitlines()
        self.assertTrue(any("sources reloaded" in l for l in lines))
        for line in lines:
            self.assertRegex(line, STAMP, line)
        self.assertNotIn("<6>", err)


def build_dir():
    return os.path.dirname(os.path.abspath(vault.BIN))


REQUIRED = [
    r"^Type=notify$",
    r"^ExecReload=/bin/kill -HUP \$MAINPID$",
    r"^ProtectSystem=strict$",
    r"^NoNewPrivileges=yes$",
    r"^PrivateTmp=yes$",
]


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(os.path.join(build_dir(), "cmake_install.cmake")):
            raise unittest.SkipTest("not a CMake build folder: " + build_dir())
        cls.tmp = tempfile.mkdtemp(prefix="ev-install-")
        cls.prefix = os.path.join(cls.tmp, "usr")
        r = subprocess.run(["cmake", "--install", build_dir(), "--prefix", cls.prefix],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError("cmake --install failed:\n" + r.stdout + r.stderr)
        cls.destdir = os.path.join(cls.tmp, "stage")
        r = subprocess.run(["cmake", "--install", build_dir(), "--prefix", "/opt/ev"],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, DESTDIR=cls.destdir))
        if r.returncode != 0:
            raise AssertionError("cmake --install with DESTDIR failed:\n" + r.stdout + r.stderr)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def unit(self, name, root=None):
        with open(os.path.join(root or self.prefix, "lib/systemd/system", name)) as f:
            return f.read()

    def test_tree(self):
        p = self.prefix
        for rel in ["bin/emailvault", "lib/systemd/system/emailvault.service",
                    "lib/systemd/system/emailvault@.service",
                    "share/doc/emailvault/README.md", "share/doc/emailvault/operations.md",
                    "share/doc/emailvault/sources.md", "share/doc/emailvault/architecture.md",
                    "share/doc/emailvault/examples/example.lua.example",
                    "share/doc/emailvault/examples/emailvault.logrotate"]:
            self.assertTrue(os.path.isfile(os.path.join(p, rel)), rel)
        self.assertTrue(os.access(os.path.join(p, "bin/emailvault"), os.X_OK))
        r = subprocess.run([os.path.join(p, "bin/emailvault"), "version"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^emailvault \d+\.\d+")
        # the installed example is the one that validates once copied
        with open(os.path.join(p, "share/doc/emailvault/examples/example.lua.example"), "rb") as a, \
                open(os.path.join(vault.SOURCE_DIR, "sources.d/example.lua.example"), "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_units_name_the_installed_binary(self):
        for name in ["emailvault.service", "emailvault@.service"]:
            text = self.unit(name)
            start = re.search(r"^ExecStart=(\S+) run (.*)$", text, re.M)
            self.assertTrue(start, name)
            self.assertEqual(start.group(1), os.path.join(self.prefix, "bin/emailvault"))
            for pat in REQUIRED:
                self.assertRegex(text, re.compile(pat, re.M), name)
            # the one writable path is the data folder ExecStart gives
            data = re.search(r"--data (\S+)", start.group(2)).group(1)
            self.assertEqual(re.findall(r"^ReadWritePaths=(.*)$", text, re.M), [data], name)
            self.assertIn("file://%s/share/doc/emailvault/operations.md" % self.prefix, text)
        # under DESTDIR the unit names the final place, not the staging one
        staged = self.unit("emailvault.service", os.path.join(self.destdir, "opt/ev"))
        self.assertIn("\nExecStart=/opt/ev/bin/emailvault run ", staged)
        self.assertNotIn(self.destdir, staged)
        self.assertTrue(os.path.isfile(os.path.join(self.destdir, "opt/ev/bin/emailvault")))

    def test_systemd_analyze_verify(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed")
        units = os.path.join(self.prefix, "lib/systemd/system")
        # a template is verified as an instance of it
        inst = os.path.join(self.tmp, "emailvault@alice.service")
        shutil.copy(os.path.join(units, "emailvault@.service"), inst)
        for path in [os.path.join(units, "emailvault.service"), inst]:
            r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            # unknown keys and bad values are only warnings: there must be none
            self.assertEqual(r.stderr.strip(), "", path)


class SyscallFilterTest(unittest.TestCase):
    """The unit's SystemCallFilter=@system-service must allow every system
    call a complete import makes (else systemd kills the engine with
    EPERM errors in odd places)."""

    def setUp(self):
        for tool in ("strace", "systemd-analyze"):
            if not shutil.which(tool):
                self.skipTest(tool + " is not installed")
        r = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "true"],
                           capture_output=True, timeout=30)
        if r.returncode != 0:
            self.skipTest("strace cannot trace here: " + r.stderr.decode(errors="replace"))

    def allowed(self):
        r = subprocess.run(["systemd-analyze", "syscall-filter", "@system-service"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        out, todo, seen = set(), ["@system-service"], set()
        # groups name other groups: expand them
        while todo:
            g = todo.pop()
            if g in seen:
                continue
            seen.add(g)
            r = subprocess.run(["systemd-analyze", "syscall-filter", g],
                               capture_output=True, text=True, timeout=30)
            for line in r.stdout.splitlines()[1:]:
                w = line.strip()
                if not w or w.startswith("#"):
                    continue
                if w.startswith("@"):
                    todo.append(w)
                else:
                    out.add(w)
        return out

    def test_import_stays_inside_system_service(self):
        import dovecot
        d = dovecot.Dovecot().start()
        e = Engine(log_level="info")
        try:
            d.fill({"INBOX": 20, "Archive": 10})
            e.write_source("work", source_file(port=d.tls_port, username=d.user,
                                               password=d.password,
                                               ca_file='"%s"' % d.cert_path))
            trace = os.path.join(e.tmp, "strace")
            # LeakSanitizer cannot run under ptrace: in the sanitizer build it
            # would abort the traced engine at exit (the other tests check leaks).
            env = dict(os.environ)
            env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
            p = subprocess.run(["strace", "-f", "-qq", "-o", trace, vault.BIN, "run",
                                "--sources", e.sources, "--data", e.data, "--log", e.log_path,
                                "--once"], capture_output=True, text=True, timeout=300, env=env)
            self.assertEqual(p.returncode, 0, e.log()[-3000:] + p.stderr[-3000:])
            self.assertTrue(e.log_has(r"\[work\] import complete"), e.log()[-3000:])
            called = set()
            with open(trace) as f:
                for line in f:
                    m = re.match(r"^\d+\s+([a-z_0-9]+)\(", line)
                    if m:
                        called.add(m.group(1))
            self.assertGreater(len(called), 20)
            outside = sorted(called - self.allowed())
            self.assertEqual(outside, [], "system calls outside @system-service")
        finally:
            e.cleanup()
            d.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
