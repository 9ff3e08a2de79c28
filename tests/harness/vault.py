"""Drives the real emailvault binary in tests: temp folders for sources and
data, the engine as a subprocess, eval through the control socket, the log.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

BIN = os.environ.get("EMAILVAULT_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "emailvault")
SOURCE_DIR = os.environ.get("EMAILVAULT_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))


# No test reads the engine configuration file of whoever runs the suite.
NO_CONFIG = "/nonexistent-emailvault-test/emailvault.lua"


def run(*args, env=None, timeout=60, input=None):
    """Runs `emailvault ARGS...`; returns CompletedProcess with text output."""
    e = dict(os.environ)
    e["EMAILVAULT_CONFIG"] = NO_CONFIG
    if env:
        e.update(env)
    return subprocess.run([BIN, *args], capture_output=True, text=True,
                          env=e, timeout=timeout, input=input)


def source_file(host="127.0.0.1", port=1, username="alice", password="secret-pw",
                extra="", **fields):
    """The text of a source file; FIELDS are Lua expressions by name."""
    lines = ["return imap {",
             f'  host = "{host}",',
             f"  port = {port},",
             f'  username = "{username}",']
    if password is not None:
        lines.append(f"  password = {password if password.startswith('secret.') else json.dumps(password)},")
    for k, v in fields.items():
        lines.append(f"  {k} = {v},")
    if extra:
        lines.append(extra)
    lines.append("}")
    return "\n".join(lines) + "\n"


class Engine:
    """An engine on private folders. Use as a context manager."""

    def __init__(self, tmp=None, env=None, log_level="debug", extra_args=()):
        self.tmp = tmp or tempfile.mkdtemp(prefix="ev-test-")
        self.sources = os.path.join(self.tmp, "sources.d")
        self.data = os.path.join(self.tmp, "data")
        self.log_path = os.path.join(self.tmp, "engine.log")
        # emailvault.lua beside sources.d/, as in ~/.config/emailvault/
        self.config = os.path.join(self.tmp, "emailvault.lua")
        os.makedirs(self.sources, exist_ok=True)
        self.env = dict(os.environ)
        self.env["EMAILVAULT_CONFIG"] = self.config
        if env:
            self.env.update(env)
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.proc = None

    def write_source(self, sid, text):
        path = os.path.join(self.sources, sid + ".lua")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)   # atomic, as an editor would save
        return path

    def write_config(self, text, path=None):
        """Writes the engine configuration file (atomically, as an editor would)."""
        path = path or self.config
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
        return path

    def remove_source(self, sid):
        os.unlink(os.path.join(self.sources, sid + ".lua"))

    def start(self, wait=True, once=False):
        args = [BIN, "run", "--sources", self.sources, "--data", self.data,
                "--log", self.log_path, "--log-level", self.log_level, *self.extra_args]
        if once:
            args.append("--once")
        self.proc = subprocess.Popen(args, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        if wait and not once:
            self.wait_for_socket()
        return self

    def wait_for_socket(self, timeout=10):
        sock = os.path.join(self.data, "control.sock")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(sock) and self.log_has("sources reloaded"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError("engine exited with %s: %s\n%s" % (
                    self.proc.returncode, self.proc.stderr.read(), self.log()))
            time.sleep(0.05)
        raise RuntimeError("engine did not start:\n" + self.log())

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_lines(self, pattern=None):
        lines = self.log().splitlines()
        if pattern is None:
            return lines
        return [l for l in lines if re.search(pattern, l)]

    def log_has(self, pattern):
        return bool(self.log_lines(pattern))

    def wait_for_log(self, pattern, timeout=10, count=1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.log_lines(pattern)) >= count:
                return self.log_lines(pattern)
            if self.proc and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("log has no %d line(s) matching %r within %ss:\n%s" % (
            count, pattern, timeout, self.log()))

    def eval(self, chunk, json_out=True, check=True, timeout=60):
        args = ["eval", "--data", self.data]
        if json_out:
            args.append("--json")
        args.append(chunk)
        r = run(*args, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("eval %r failed (%d): %s%s" % (chunk, r.returncode, r.stdout, r.stderr))
        if json_out and r.returncode == 0:
            return json.loads(r.stdout)
        return r

    def sources_by_id(self):
        return {s["id"]: s for s in self.eval("return vault.sources()")}

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self, timeout=10):
        """SIGHUP, and wait for the reload's summary line."""
        n = len(self.log_lines("sources reloaded"))
        self.signal(signal.SIGHUP)
        return self.wait_for_log("sources reloaded", timeout=timeout, count=n + 1)[-1]

    def stop(self, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        if self.proc:
            self.stdout, self.stderr = self.proc.communicate()
        return self.proc.returncode if self.proc else None

    def wait(self, timeout=120):
        self.proc.wait(timeout=timeout)
        self.stdout, self.stderr = self.proc.communicate()
        return self.proc.returncode

    def cleanup(self):
        try:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        finally:
            if not os.environ.get("EMAILVAULT_KEEP_TMP"):
                shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def parse_reload_line(line):
    """{'added': [...], ...} from a 'sources reloaded' log line."""
    out = {}
    for key in ("added", "removed", "changed", "unchanged", "failed"):
        m = re.search(r"\b%s=(\S+)" % key, line)
        out[key] = [] if not m or m.group(1) == "-" else m.group(1).split(",")
    return out
