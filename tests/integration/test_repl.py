"""The interactive REPL through a pseudo-terminal: multi-line chunks, results,
history, Ctrl-C, completion, two REPLs at once, offline mode; and plain line
input where TERM is dumb or unset."""
import os
import pty
import select
import signal
import subprocess
import tempfile
import time
import unittest

import vault
from vault import Engine, source_file


class Repl:
    """emailvault repl on a pseudo-terminal of type TERM (None: no TERM at
    all). The type is always set here: the caller's own environment (CI,
    cron, a container: no TERM, or TERM=dumb) must not change what is tested."""

    def __init__(self, data, *extra, history=None, term="xterm"):
        self.history = history or tempfile.mktemp(prefix="ev-hist-")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ["EMAILVAULT_HISTORY"] = self.history
            os.environ.pop("TERM", None)
            for var in ("LANG", "LC_ALL", "LC_CTYPE"):   # like cron: no locale
                os.environ.pop(var, None)
            if term is not None:
                os.environ["TERM"] = term
            os.execv(vault.BIN, ["emailvault", "repl", "--data", data, *extra])
        self.out = ""
        self.transcript = ""        # everything read, for whole-output checks

    def read_until(self, text, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if text in self.out:
                i = self.out.index(text) + len(text)
                seen, self.out = self.out[:i], self.out[i:]
                return seen
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self.out += chunk.decode("utf-8", "replace")
                self.transcript += chunk.decode("utf-8", "replace")
        raise AssertionError("no %r in REPL output: %r" % (text, self.out))

    def send(self, text):
        os.write(self.fd, text.encode())

    def line(self, text, until="vault> "):
        self.send(text + "\r")
        return self.read_until(until)

    def close(self):
        """Ctrl-D; the exit status (None if it had to be killed). Idempotent."""
        if self.fd is None:
            return self.status
        self.status = None
        try:
            self.send("\x04")
            for _ in range(50):
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.status = os.waitstatus_to_exitcode(status)
                    return self.status
                time.sleep(0.1)
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        finally:
            os.close(self.fd)
            self.fd = None
        return self.status


class ReplTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.e = Engine()
        cls.e.write_source("work", source_file(name='"Work"'))
        cls.e.start()

    @classmethod
    def tearDownClass(cls):
        cls.e.stop()
        cls.e.cleanup()

    def setUp(self):
        self.r = Repl(self.e.data)
        self.r.read_until("vault> ")

    def tearDown(self):
        self.r.close()
        if os.path.exists(self.r.history):
            os.unlink(self.r.history)

    def test_multi_line_function_and_table(self):
        r = self.r
        r.line("function f(x)", until="...> ")
        r.line("  return {b = x, a = {1, 2}}", until="...> ")
        r.line("end")
        out = r.line("f(7)")
        self.assertIn("{\r\n  a = {\r\n    1,\r\n    2,\r\n  },\r\n  b = 7,\r\n}", out)

    def test_history_is_written(self):
        r = self.r
        r.line("x = 40")
        self.assertIn("42", r.line("x + 2"))
        r.close()
        with open(r.history) as f:
            hist = f.read()
        self.assertIn("x\\040+\\0402", hist)   # libedit's history format escapes spaces
        self.assertEqual(os.stat(r.history).st_mode & 0o777, 0o600)
        # a new session reads it back: the previous line is one "up" away
        r2 = Repl(self.e.data, history=r.history)
        try:
            r2.read_until("vault> ")
            r2.send("\x1b[A\r")       # arrow up, enter
            self.assertIn("42", r2.read_until("vault> "))
        finally:
            r2.close()
        self.r = Repl(self.e.data)
        self.r.read_until("vault> ")

    def test_ctrl_c_interrupts_a_busy_chunk(self):
        r = self.r
        r.send("while true do end\r")
        time.sleep(0.8)
        r.send("\x03")
        self.assertIn("interrupted", r.read_until("vault> "))
        self.assertIn("2", r.line("1 + 1"))
        self.assertEqual(self.e.eval("return 'engine alive'"), "engine alive")

    def test_ctrl_c_at_the_prompt_drops_the_line(self):
        r = self.r
        r.line("local t = {", until="...> ")
        r.send("\x03")
        r.read_until("vault> ")
        self.assertIn("5", r.line("2 + 3"))

    def test_non_ascii_input(self):
        # libedit drops what it cannot decode in a non-UTF-8 locale (LANG unset here)
        self.assertIn('"Zürich日本"', self.r.line("return 'Zürich' .. '日本'"))

    def test_errors_show_a_traceback(self):
        out = self.r.line("error('broken here')")
        self.assertIn("broken here", out)
        self.assertIn("stack traceback", out)

    def test_async_api_at_the_prompt(self):
        out = self.r.line("vault.sleep(0.2) return vault.status('work').name")
        self.assertIn('"Work"', out)

    def test_completion(self):
        r = self.r
        r.send("vault.sou\t")
        r.read_until("rces")              # the line is redrawn with the rest
        self.assertIn("Work", r.line("()"))
        r.send("vault.imap.con\t")
        r.read_until("nect")
        self.assertIn("function", r.line(""))   # vault.imap.connect, evaluated

    def test_two_repls_at_once(self):
        other = Repl(self.e.data)
        try:
            other.read_until("vault> ")
            self.r.send("vault.sleep(1.5) return 'first'\r")
            t0 = time.time()
            self.assertIn('"second"', other.line("return 'second'"))
            self.assertLess(time.time() - t0, 1.2)     # not blocked by the first
            self.assertIn('"first"', self.r.read_until("vault> "))
        finally:
            other.close()

    def test_long_output_is_cut_with_a_note(self):
        out = self.r.line("local t = {} for i = 1, 20000 do t[i] = i end return t")
        self.assertIn("output cut at", out)


class PlainTerminalTest(unittest.TestCase):
    """TERM=dumb or no TERM: plain line input. The terminal's line discipline
    edits (erase, ^C, ^D); the REPL writes prompts and results only: no escape
    sequence, no bell, no prompt redrawn over itself."""

    @classmethod
    def setUpClass(cls):
        cls.e = Engine()
        cls.e.start()

    @classmethod
    def tearDownClass(cls):
        cls.e.stop()
        cls.e.cleanup()

    def session(self, r):
        r.read_until("vault> ")
        self.assertIn("42", r.line("x = 20 return x + 22"))
        self.assertIn("42", r.line("x +\t22"))              # a Tab is only a blank
        self.assertIn("\r\n0\r\n", r.line("1 +\x7f- 1"))     # erased by the terminal
        r.line("function f(a)", until="...> ")
        r.line("  return {a, a * 2}", until="...> ")
        r.line("end")
        self.assertIn("{\r\n  21,\r\n  42,\r\n}", r.line("f(21)"))
        self.assertIn("broken here", r.line("error('broken here')"))
        r.line("local t = {", until="...> ")
        r.send("\x03")                                     # Ctrl-C drops the chunk
        r.read_until("vault> ")
        self.assertIn("5", r.line("2 + 3"))
        self.assertEqual(r.close(), 0)                      # Ctrl-D leaves
        out = r.transcript
        self.assertNotIn("\x1b", out)
        self.assertNotIn("\x07", out)
        self.assertNotIn("\rvault> ", out)
        self.assertNotIn("\r   ...> ", out)
        self.assertEqual(out.count("vault> "), 9)
        self.assertIn("plain line input", out)      # the banner says why

    def test_a_chunk_too_big_to_send(self):
        """Over the control socket's frame limit: said at once, and the REPL
        goes on (it used to wait for a refusal the engine never sends)."""
        hist = tempfile.mktemp(prefix="ev-hist-")
        env = dict(os.environ, EMAILVAULT_HISTORY=hist)
        big = "return #'" + "x" * (17 << 20) + "'\n"
        try:
            p = subprocess.run([vault.BIN, "repl", "--data", self.e.data],
                               input=big + "return 6 * 7\n", capture_output=True,
                               text=True, timeout=60, env=env)
        finally:
            if os.path.exists(hist):
                os.unlink(hist)
        self.assertEqual(p.returncode, 0, p.stderr[-500:])
        self.assertIn("the chunk is too big to send", p.stderr)
        self.assertIn("42", p.stdout)

    def test_term_dumb(self):
        self.session(Repl(self.e.data, term="dumb"))

    def test_no_term(self):
        self.session(Repl(self.e.data, term=None))

    def test_offline_no_term(self):
        r = Repl(self.e.data, "--offline", term=None)
        try:
            r.read_until("vault> ")
            self.assertIn("messages", r.line("vault.stats()"))
            self.assertIn("needs the running engine", r.line("vault.reclaim()"))
            self.assertIn("\r\n0\r\n", r.line("1 +\x7f- 1"))
        finally:
            self.assertEqual(r.close(), 0)
        self.assertNotIn("\x1b", r.transcript)
        self.assertNotIn("\rvault> ", r.transcript)
        self.assertIn("plain line input", r.transcript)


class ReplWithoutEngineTest(unittest.TestCase):
    def test_no_engine_says_how_to_start_it(self):
        with Engine() as e:
            r = vault.run("repl", "--data", e.data)
            self.assertEqual(r.returncode, 1)
            self.assertIn("no engine is running", r.stderr)
            self.assertIn("emailvault run --data", r.stderr)
            self.assertIn("--offline", r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1)

    def test_offline_mode(self):
        with Engine() as e:
            e.write_source("work", source_file(name='"Work"', port=1))
            e.start()
            e.wait_for_log(r"\[work\] status .*to=error")
            e.stop()
            r = Repl(e.data, "--offline")
            try:
                r.read_until("vault> ")
                out = r.line("vault.status('work').status")
                self.assertIn('"error"', out)
                out = r.line("vault.stats().messages")
                self.assertIn("0", out)
                out = r.line("vault.pause('work')")
                self.assertIn("needs the running engine", out)
                r.send("vault.sta\t")           # stats / status: completes the common part
                r.read_until("t")
                self.assertIn("messages", r.line("s()"))
            finally:
                r.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
