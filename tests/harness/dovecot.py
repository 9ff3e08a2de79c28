"""A private, throw-away Dovecot 2.3 IMAP server for integration tests.

Usage::

    from dovecot import Dovecot
    with Dovecot() as dc:                      # or dc = Dovecot(); dc.start(); ...; dc.stop()
        dc.fill({"INBOX": 100, "Archive/2023": 20})
        msgs = dc.server_messages("INBOX")     # [(uid, raw_bytes), ...] as served over IMAP

Every instance gets its own temporary folder (config, TLS certificate, passwd file, logs,
base_dir, state_dir and the users' Maildirs), two free TCP ports on 127.0.0.1 (implicit TLS
and plain+STARTTLS), and its own instance_name.  It never touches the system service.

The server is stopped when the ``with`` block ends, on ``stop()``, at interpreter exit, on
SIGTERM/SIGHUP (when the test has not installed its own handler) and, as a last resort, when
the Python process dies (the Dovecot master is started with PR_SET_PDEATHSIG).

Set EMAILVAULT_KEEP_TMP=1 to keep the temporary folder after stop (its path is printed).
Python 3 standard library only.
"""

import atexit
import base64
import ctypes
import hashlib
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

__all__ = [
    "Dovecot", "DovecotError", "AWKWARD_PASSWORD", "DEFAULT_USER", "DEFAULT_PASSWORD",
    "SPECIAL_USE", "imap_utf7_encode", "imap_utf7_decode", "quote_mailbox", "free_ports",
    "flags_to_maildir", "processes_matching",
]

DEFAULT_USER = "alice"
DEFAULT_PASSWORD = "alice-secret-1"
# Quote, backslash, space and a non-ASCII letter: exercises quoting/literals in LOGIN/AUTHENTICATE.
AWKWARD_PASSWORD = 'p"a\\ss w\u00f6rd'

# Folders declared with SPECIAL-USE attributes in the namespace configuration.
SPECIAL_USE = {"Sent": "\\Sent", "Trash": "\\Trash", "Drafts": "\\Drafts", "Junk": "\\Junk"}

DOVECOT_BIN = os.environ.get("DOVECOT_BIN", shutil.which("dovecot", path="/usr/sbin:/sbin:" + os.environ.get("PATH", "")) or "/usr/sbin/dovecot")
DOVEADM_BIN = os.environ.get("DOVEADM_BIN", shutil.which("doveadm", path="/usr/bin:/usr/sbin:" + os.environ.get("PATH", "")) or "/usr/bin/doveadm")
OPENSSL_BIN = shutil.which("openssl") or "/usr/bin/openssl"
DH_PEM = "/usr/share/dovecot/dh.pem"

_MAILDIR_FLAGS = {"\\draft": "D", "\\flagged": "F", "\\answered": "R", "\\seen": "S", "\\deleted": "T"}


class DovecotError(RuntimeError):
    """Raised when the server cannot be started or a doveadm command fails."""


# ----------------------------------------------------------------------------------------
# small helpers usable by tests


def imap_utf7_encode(name):
    """Encode a Unicode mailbox name in IMAP modified UTF-7 (RFC 3501 5.1.3)."""
    out = []
    pending = []

    def flush():
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
            out.append("&" + b64 + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def imap_utf7_decode(name):
    """Decode an IMAP modified UTF-7 mailbox name into Unicode."""
    if isinstance(name, bytes):
        name = name.decode("ascii")
    out = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.index("-", i + 1)
        chunk = name[i + 1:end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            out.append(base64.b64decode(b64).decode("utf-16-be"))
        i = end + 1
    return "".join(out)


def quote_mailbox(name):
    """Mailbox argument for imaplib: modified UTF-7, as a quoted string."""
    enc = imap_utf7_encode(name)
    return '"' + enc.replace("\\", "\\\\").replace('"', '\\"') + '"'


def free_ports(n=1, host="127.0.0.1"):
    """Return n distinct free TCP ports on host (bind to port 0, read, close)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def flags_to_maildir(flags):
    """'\\Seen \\Flagged' or ('\\Seen',) -> 'FS' (Maildir info letters, sorted)."""
    if isinstance(flags, str):
        flags = flags.split()
    letters = set()
    for f in flags:
        try:
            letters.add(_MAILDIR_FLAGS[f.lower()])
        except KeyError:
            raise ValueError("fill() supports only system flags, not %r (use deliver())" % f)
    return "".join(sorted(letters))


def _greeting(host, port, timeout, ctx=None):
    """True when host:port answers with an IMAP '* OK' greeting (over TLS when ctx)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = ctx.wrap_socket(raw, server_hostname=host) if ctx else raw
            try:
                data = b""
                while b"\n" not in data and len(data) < 4096:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"* OK"):
                    sock.sendall(b"z LOGOUT\r\n")
                    try:
                        while sock.recv(4096):
                            pass
                    except OSError:
                        pass
                    return True
                return False
            finally:
                if ctx:
                    sock.close()
    except (OSError, ssl.SSLError):
        return False


def _set_pdeathsig():
    # Runs in the child between fork and exec: if the test process dies (even by SIGKILL),
    # the kernel sends SIGTERM to the Dovecot master, which then shuts its children down.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _proc_children_of_session(sid):
    """PIDs of live processes whose session id is sid (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        # fields after the ")" of comm: state ppid pgrp session ...
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) > 3 and rest[0] != "Z" and int(rest[3]) == sid:
            pids.append(int(entry))
    return pids


def _proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def processes_matching(text):
    """[(pid, cmdline)] of all live processes whose command line (process title for
    Dovecot's children, e.g. 'dovecot-INSTANCE/imap') contains text."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            cmd = _proc_cmdline(int(entry))
            if text in cmd:
                found.append((int(entry), cmd))
    return found


# ----------------------------------------------------------------------------------------
# process-wide cleanup

_LIVE = set()
_LIVE_LOCK = threading.Lock()
_HOOKS_INSTALLED = False


def _cleanup_all():
    with _LIVE_LOCK:
        live = list(_LIVE)
    for inst in live:
        try:
            inst.stop()
        except Exception as e:  # pragma: no cover - best effort at exit
            sys.stderr.write("dovecot harness: cleanup of %s failed: %s\n" % (inst.tmpdir, e))


def _on_fatal_signal(signum, frame):
    _cleanup_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_hooks():
    global _HOOKS_INSTALLED
    if _HOOKS_INSTALLED:
        return
    _HOOKS_INSTALLED = True
    atexit.register(_cleanup_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                if signal.getsignal(sig) == signal.SIG_DFL:
                    signal.signal(sig, _on_fatal_signal)
            except (ValueError, OSError):
                pass


def _tmp_parent():
    """A folder for mkdtemp whose every ancestor is traversable by 'nobody' and whose
    path is short enough for Dovecot's unix sockets (sun_path is 108 bytes)."""
    candidates = [os.environ.get("EMAILVAULT_TEST_TMP"), tempfile.gettempdir(), "/tmp"]
    for cand in candidates:
        if not cand or not os.path.isdir(cand):
            continue
        cand = os.path.realpath(cand)
        if len(cand) > 48:
            continue
        ok = True
        p = cand
        while True:
            st = os.stat(p)
            if not (st.st_mode & 0o001):
                ok = False
                break
            if p == "/":
                break
            p = os.path.dirname(p)
        if ok:
            return cand
    raise DovecotError("no temporary folder traversable by 'nobody' (set EMAILVAULT_TEST_TMP)")


# ----------------------------------------------------------------------------------------


class Dovecot:
    """A private Dovecot instance.  See the module docstring."""

    _counter = 0

    def __init__(self, user=DEFAULT_USER, password=DEFAULT_PASSWORD, users=None,
                 host="127.0.0.1", autocreate_special=True, extra_conf="",
                 start_timeout=10.0, auth_failure_delay=0, auth_mechanisms="plain login",
                 passdb_first="", nice=0):
        """users: optional dict or list of (user, password); the first one becomes
        self.user/self.password (otherwise user/password are the single account).
        extra_conf: text appended to dovecot.conf (e.g. 'imap_capability = ...').
        auth_mechanisms: what the server offers (e.g. 'plain login xoauth2 oauthbearer').
        passdb_first: passdb blocks placed before the passwd-file one (an oauth2 passdb).
        autocreate_special: create+subscribe Sent/Trash/Drafts/Junk automatically.
        nice: the server's processes run at this nice value (a test of the client's
        latency on a small machine: the server would be on another one)."""
        if users is None:
            users = [(user, password)]
        elif isinstance(users, dict):
            users = list(users.items())
        users = [(str(u), str(p)) for u, p in users]
        if not users:
            raise ValueError("at least one user is needed")
        for u, p in users:
            for bad in (":", "\n", "\r", "\0"):
                if bad in u or bad in p:
                    raise ValueError("user/password may not contain %r (passwd-file format)" % bad)
            if "/" in u or u in (".", ".."):
                raise ValueError("bad user name %r" % u)
        self.users = dict(users)
        self.user, self.password = users[0]
        self.host = host
        self.autocreate_special = autocreate_special
        self.extra_conf = extra_conf
        self.start_timeout = start_timeout
        self.auth_failure_delay = auth_failure_delay
        self.auth_mechanisms = auth_mechanisms
        self.passdb_first = passdb_first
        self.nice = nice
        self.tls_port = self.plain_port = None
        self.tmpdir = self.conf = self.log_path = self.cert_path = self.key_path = None
        self.cert_sha256 = None
        self.instance_name = None
        self.proc = None
        self.timings = {}
        self._path_cache = {}
        self._seq = 0
        self._stopping = False
        try:
            pw = pwd.getpwnam("nobody")
            self.uid = pw.pw_uid
            self.gid = grp.getgrnam("nogroup").gr_gid
        except KeyError:
            self.uid = self.gid = 65534

    # -- context manager ------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def __repr__(self):
        return "<Dovecot %s tls=%s plain=%s %s>" % (self.instance_name, self.tls_port,
                                                     self.plain_port, self.tmpdir)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    # -- start ----------------------------------------------------------------------------

    def start(self):
        if self.proc is not None:
            raise DovecotError("already started")
        _install_hooks()
        t0 = time.monotonic()
        Dovecot._counter += 1
        self.tmpdir = tempfile.mkdtemp(prefix="evdc-", dir=_tmp_parent())
        os.chmod(self.tmpdir, 0o755)  # mkdtemp makes 0700; nobody/dovecot/dovenull must traverse
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            self.instance_name = "evtest-%d-%d-%s" % (os.getpid(), Dovecot._counter,
                                                      os.path.basename(self.tmpdir)[5:])
            self.conf = os.path.join(self.tmpdir, "dovecot.conf")
            self.log_path = os.path.join(self.tmpdir, "dovecot.log")
            self.stderr_path = os.path.join(self.tmpdir, "dovecot.stderr")
            self.base_dir = os.path.join(self.tmpdir, "run")
            self.state_dir = os.path.join(self.tmpdir, "state")
            self.home_root = os.path.join(self.tmpdir, "home")
            self.passwd_path = os.path.join(self.tmpdir, "passwd")
            os.mkdir(self.state_dir, 0o755)
            os.mkdir(self.home_root, 0o755)
            self._make_cert()
            self._write_passwd()
            for u in self.users:
                self._make_home(u)
            self.timings["prepare"] = time.monotonic() - t0
            last = None
            for attempt in range(3):  # a port may be taken between picking and binding
                self.tls_port, self.plain_port = free_ports(2, self.host)
                self._write_conf()
                try:
                    self._spawn()
                    break
                except DovecotError as e:
                    last = e
                    if "in use" not in str(e):
                        raise
            else:
                raise last
            self.timings["start"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def _make_cert(self):
        ssl_dir = os.path.join(self.tmpdir, "ssl")
        os.mkdir(ssl_dir, 0o755)
        self.cert_path = os.path.join(ssl_dir, "cert.pem")
        self.key_path = os.path.join(ssl_dir, "key.pem")
        cmd = [OPENSSL_BIN, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
               "-keyout", self.key_path, "-out", self.cert_path,
               "-subj", "/CN=127.0.0.1",
               "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2"]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise DovecotError("openssl failed: %s" % r.stdout.decode("utf-8", "replace"))
        os.chmod(self.key_path, 0o600)
        with open(self.cert_path, "r", encoding="ascii") as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        self.cert_sha256 = hashlib.sha256(der).hexdigest()

    @property
    def cert_sha256_colons(self):
        """Fingerprint in openssl's 'AB:CD:...' notation."""
        h = self.cert_sha256.upper()
        return ":".join(h[i:i + 2] for i in range(0, len(h), 2))

    def _write_passwd(self):
        lines = "".join("%s:{PLAIN}%s::::::\n" % (u, p) for u, p in self.users.items())
        with open(self.passwd_path, "w", encoding="utf-8") as f:
            f.write(lines)
        try:
            gid = grp.getgrnam("dovecot").gr_gid
        except KeyError:
            gid = 0
        os.chown(self.passwd_path, 0, gid)
        os.chmod(self.passwd_path, 0o640)

    def _make_home(self, user):
        home = os.path.join(self.home_root, user)
        paths = [home, os.path.join(home, "Maildir")]
        paths += [os.path.join(home, "Maildir", d) for d in ("cur", "new", "tmp")]
        for p in paths:
            os.mkdir(p, 0o700)
            os.chown(p, self.uid, self.gid)

    def _write_conf(self):
        t = self.tmpdir
        special = []
        for name, use in SPECIAL_USE.items():
            auto = "  auto = subscribe\n" if self.autocreate_special else ""
            special.append("  mailbox %s {\n    special_use = %s\n%s  }\n" % (name, use, auto))
        dh = "ssl_dh = <%s\n" % DH_PEM if os.path.exists(DH_PEM) else ""
        conf = f"""# generated by tests/harness/dovecot.py -- private test instance
instance_name = {self.instance_name}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
protocols = imap
listen = {self.host}
shutdown_clients = yes

ssl = yes
ssl_cert = <{self.cert_path}
ssl_key = <{self.key_path}
ssl_min_protocol = TLSv1.2
{dh}
disable_plaintext_auth = no
auth_mechanisms = {self.auth_mechanisms}
auth_failure_delay = {self.auth_failure_delay} secs
auth_verbose = yes
{self.passdb_first}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_path}
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={self.home_root}/%u
}}

first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir

namespace inbox {{
  inbox = yes
  separator = /
  prefix =
{''.join(special)}}}

protocol imap {{
  mail_max_userip_connections = 100
}}

service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.plain_port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.tls_port}
    ssl = yes
  }}
}}
{self.extra_conf}
"""
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(conf)
        os.chmod(self.conf, 0o644)

    def _preexec(self):
        _set_pdeathsig()
        if self.nice:
            os.nice(self.nice)

    def _spawn(self):
        # -F keeps the master in the foreground as our child, so we can reap it and
        # tie its life to ours (PDEATHSIG); otherwise identical to `dovecot -c conf`.
        errf = open(self.stderr_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [DOVECOT_BIN, "-F", "-c", self.conf], stdin=subprocess.DEVNULL,
                stdout=errf, stderr=errf, start_new_session=True, preexec_fn=self._preexec,
                close_fds=True)
        finally:
            errf.close()
        deadline = time.monotonic() + self.start_timeout
        # Ready = both ports answer with an IMAP greeting (TLS verified on the TLS port).
        # A bare TCP connect is not enough: stopping a master whose login processes are
        # still starting takes ~6 s instead of ~1 s.
        pending = [self.tls_port, self.plain_port]
        ctx = self.ssl_context()
        while pending:
            if self.proc.poll() is not None:
                msg = self._failure_text("dovecot exited with status %s" % self.proc.returncode)
                self.proc = None
                raise DovecotError(msg)
            pending = [p for p in pending
                       if not _greeting(self.host, p, 1.0, ctx if p == self.tls_port else None)]
            if not pending:
                break
            if time.monotonic() > deadline:
                msg = self._failure_text("dovecot did not accept connections on %s:%s within %.0f s"
                                         % (self.host, pending, self.start_timeout))
                self._kill_all()
                raise DovecotError(msg)
            time.sleep(0.05)

    def _failure_text(self, head):
        return "%s\n--- stderr ---\n%s\n--- log tail (%s) ---\n%s" % (
            head, self._read_tail(self.stderr_path, 20), self.log_path, self.log_tail(30))

    @staticmethod
    def _read_tail(path, n):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return "(none)"
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-n:])

    def log_tail(self, n=30):
        """The last n lines of the Dovecot log (str)."""
        return self._read_tail(self.log_path, n) if self.log_path else ""

    # -- stop -----------------------------------------------------------------------------

    def processes(self):
        """[(pid, cmdline)] of this instance's live processes (master and children)."""
        if self.proc is None:
            return []
        return [(p, _proc_cmdline(p)) for p in _proc_children_of_session(self.proc.pid)]

    def _kill_all(self):
        if self.proc is None:
            return
        sid = self.proc.pid
        for pid in _proc_children_of_session(sid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout=10.0):
        """Stop the server (SIGTERM to the master, which is what `doveadm stop` does;
        SIGKILL after timeout), wait until all its processes are gone and remove tmpdir.
        Idempotent."""
        t0 = time.monotonic()
        if self.proc is not None:
            sid = self.proc.pid
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(signal.SIGTERM)
                except OSError:
                    pass
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            # Once the master is gone, children serving a still-connected client (imap,
            # imap-login, log, anvil...) may linger ~10 s: they are orphans, end them now.
            deadline = time.monotonic() + 0.2
            while _proc_children_of_session(sid) and time.monotonic() < deadline:
                time.sleep(0.02)
            self._kill_all()
            deadline = time.monotonic() + 3.0
            while _proc_children_of_session(sid) and time.monotonic() < deadline:
                time.sleep(0.02)
            self.stopped_pid = sid
        self.proc = None
        if self.tmpdir and os.path.isdir(self.tmpdir):
            keep = os.environ.get("EMAILVAULT_KEEP_TMP", "")
            if keep and keep != "0":
                sys.stderr.write("dovecot harness: keeping %s\n" % self.tmpdir)
            else:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
        with _LIVE_LOCK:
            _LIVE.discard(self)
        self.timings["stop"] = time.monotonic() - t0

    # -- doveadm --------------------------------------------------------------------------

    def doveadm(self, *args, input=None, check=True, user=None, fmt=None, _stderr=False):
        """Run `doveadm -c CONF ARGS...`; return stdout as str.  With user=NAME the
        arguments become `CMD -u NAME REST...` (args[0] may be a multi-word command given
        as a tuple, e.g. ("mailbox", "list")); fmt adds the global `-f FMT` (flow, tab...).
        input (bytes/str) is fed to stdin.  Raises DovecotError on failure when check."""
        argv = [DOVEADM_BIN, "-c", self.conf]
        if fmt:
            argv += ["-f", fmt]
        if user is not None:
            cmd = args[0]
            argv += list(cmd) if isinstance(cmd, (tuple, list)) else [cmd]
            argv += ["-u", user] + [str(a) for a in args[1:]]
        else:
            argv += [str(a) for a in args]
        if isinstance(input, str):
            input = input.encode("utf-8")
        r = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=None if input is not None else subprocess.DEVNULL)
        out = r.stdout.decode("utf-8", "replace")
        if _stderr:
            out += r.stderr.decode("utf-8", "replace")
        if check and r.returncode != 0:
            raise DovecotError("doveadm %s failed (%d): %s%s" % (" ".join(argv[3:]), r.returncode,
                                                        r.stderr.decode("utf-8", "replace"), out))
        return out

    def _u(self, user):
        return self.user if user is None else user

    # -- folders --------------------------------------------------------------------------

    def folder_names(self, user=None):
        """All mailbox names (UTF-8, '/' separated) as doveadm lists them."""
        out = self.doveadm(("mailbox", "list"), user=self._u(user))
        return [line for line in out.splitlines() if line]

    def create_folder(self, name, user=None, subscribe=True):
        """Create a folder and its missing parents (UTF-8 name, '/' separated)."""
        self.create_folders([name], user=user, subscribe=subscribe)

    def create_folders(self, names, user=None, subscribe=True):
        """Create several folders (and their parents) with one doveadm call; folders
        that exist already are fine."""
        user = self._u(user)
        wanted = []
        for name in names:
            parts = name.split("/")
            for i in range(1, len(parts) + 1):
                n = "/".join(parts[:i])
                if n.upper() != "INBOX" and n not in wanted:
                    wanted.append(n)
        if not wanted:
            return
        args = (["-s"] if subscribe else []) + wanted
        argv_desc = "mailbox create " + " ".join(wanted)
        out = self.doveadm(("mailbox", "create"), *args, user=user, check=False,
                           _stderr=True)
        errors = [line for line in out.splitlines()
                  if "Error" in line and "Mailbox already exists" not in line]
        if errors:
            raise DovecotError("doveadm %s: %s" % (argv_desc, "\n".join(errors)))

    def delete_folder(self, name, user=None, recursive=False):
        """Delete a folder (and with recursive=True its children) with its messages."""
        args = ["-s"] + (["-r"] if recursive else []) + [name]
        self.doveadm(("mailbox", "delete"), *args, user=self._u(user))
        self._path_cache.pop((self._u(user), name), None)

    def recreate_folder(self, name, user=None):
        """Delete and create again, emptying it; returns (old_uidvalidity, new_uidvalidity)."""
        old = self.uidvalidity(name, user)
        self.delete_folder(name, user)
        self.create_folder(name, user)
        new = self.uidvalidity(name, user)
        if new == old:
            raise DovecotError("UIDVALIDITY of %r did not change (%d)" % (name, old))
        return old, new

    def folder_status(self, name, user=None):
        """dict of messages, uidnext, uidvalidity, unseen, recent (ints)."""
        out = self.doveadm(("mailbox", "status"), "messages uidnext uidvalidity unseen recent",
                           name, user=self._u(user), fmt="flow")
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out)}

    def uidvalidity(self, name, user=None):
        return self.folder_status(name, user)["uidvalidity"]

    def message_count(self, name, user=None):
        return self.folder_status(name, user)["messages"]

    def folder_path(self, name, user=None):
        """Filesystem Maildir folder of a mailbox (the one holding cur/new/tmp)."""
        user = self._u(user)
        key = (user, name)
        if key not in self._path_cache:
            out = self.doveadm(("mailbox", "path"), name, user=user).strip()
            self._path_cache[key] = out
        return self._path_cache[key]

    # -- messages -------------------------------------------------------------------------

    def deliver(self, folder, raw, flags=(), user=None):
        """Put one message (bytes, stored as is) into folder via `doveadm save`; set flags
        (system flags or keywords) with `doveadm flags add`.  Returns its UID."""
        user = self._u(user)
        if folder.upper() != "INBOX":
            self.create_folders([folder], user=user)
        self.doveadm("save", "-m", folder, input=bytes(raw), user=user)
        out = self.doveadm("search", "mailbox", folder, "all", user=user)
        uid = max(int(line.split()[1]) for line in out.splitlines() if line.strip())
        if isinstance(flags, str):
            flags = flags.split()
        if flags:
            self.doveadm(("flags", "add"), " ".join(flags), "mailbox", folder, "uid", uid,
                         user=user)
        return uid

    def fill(self, spec, user=None, seed=0, flags=()):
        """Put many messages fast: Maildir files written into cur/ and one
        `doveadm force-resync`.  spec maps folder -> int (that many messages from
        mailgen with seed) or an iterable of bytes or (bytes, flags) items.  `flags`
        is the default for plain bytes items (system flags only).  Folders (and their
        parents) are created.  Returns {folder: number_of_messages_added}.
        UIDs follow the order of each folder's items."""
        user = self._u(user)
        t0 = time.monotonic()
        items = {}
        gen = None
        for folder, val in spec.items():
            if isinstance(val, int):
                if gen is None:
                    here = os.path.dirname(os.path.abspath(__file__))
                    if here not in sys.path:
                        sys.path.append(here)
                    import mailgen
                    gen = mailgen.MailGen(seed)
                val = gen.messages(val)
            items[folder] = val
        self.create_folders(list(items), user=user)
        default_info = flags_to_maildir(flags)
        added = {}
        host = "evtest"
        base_t = int(time.time()) - 10 ** 6
        pid = os.getpid()
        for folder, msgs in items.items():
            cur = os.path.join(self.folder_path(folder, user), "cur")
            if not os.path.isdir(cur):
                # auto-created (special-use) folders are listed before they exist on
                # disk; opening one makes Dovecot create it.
                self.folder_status(folder, user)
            if not os.path.isdir(cur):
                raise DovecotError("maildir %s does not exist" % cur)
            n = 0
            for item in msgs:
                if isinstance(item, tuple):
                    raw, fl = item
                    info = flags_to_maildir(fl)
                else:
                    raw, info = item, default_info
                self._seq += 1
                seq = self._seq
                # Dovecot assigns UIDs to new files ordered by the time part of the name.
                name = "%d.M%dP%dQ%d.%s,S=%d:2,%s" % (base_t + seq, seq, pid, seq, host,
                                                      len(raw), info)
                path = os.path.join(cur, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    view = memoryview(raw)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fchown(fd, self.uid, self.gid)
                finally:
                    os.close(fd)
                os.utime(path, (base_t + seq, base_t + seq))
                n += 1
            added[folder] = added.get(folder, 0) + n
        self.doveadm("force-resync", "*", user=user)
        self.timings["fill"] = time.monotonic() - t0
        return added

    # -- IMAP client side -----------------------------------------------------------------

    def ssl_context(self):
        """Client SSLContext trusting only this server's certificate (hostname checked)."""
        ctx = ssl.create_default_context(cafile=self.cert_path)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def connect(self, mode="tls", login=True, user=None, password=None, timeout=30):
        """imaplib connection.  mode: 'tls' (implicit TLS port), 'starttls' (plain port +
        STARTTLS) or 'plain'.  Logs in unless login=False (LOGIN for ASCII passwords,
        AUTHENTICATE PLAIN for others, since imaplib sends commands as ASCII)."""
        if mode == "tls":
            conn = imaplib.IMAP4_SSL(self.host, self.tls_port, ssl_context=self.ssl_context(),
                                     timeout=timeout)
        elif mode in ("starttls", "plain"):
            conn = imaplib.IMAP4(self.host, self.plain_port, timeout=timeout)
            if mode == "starttls":
                conn.starttls(ssl_context=self.ssl_context())
        else:
            raise ValueError("mode must be tls, starttls or plain")
        if login:
            u = self.user if user is None else user
            p = self.users.get(u, "") if password is None else password
            try:
                if (u + p).isascii():
                    conn.login(u, p)
                else:
                    blob = b"\0" + u.encode("utf-8") + b"\0" + p.encode("utf-8")
                    conn.authenticate("PLAIN", lambda _challenge: blob)
            except Exception:
                try:
                    conn.shutdown()
                except Exception:
                    pass
                raise
        return conn

    def server_messages(self, folder, user=None):
        """[(uid, raw_bytes)] of folder, ordered by UID, exactly as served by IMAP
        (EXAMINE + UID FETCH BODY.PEEK[]: sets no flag)."""
        conn = self.connect("tls", user=user)
        try:
            typ, data = conn.select(quote_mailbox(folder), readonly=True)
            if typ != "OK":
                raise DovecotError("EXAMINE %s: %s %s" % (folder, typ, data))
            result = []
            if int(data[0] or 0) > 0:
                typ, data = conn.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
                if typ != "OK":
                    raise DovecotError("UID FETCH %s: %s %s" % (folder, typ, data))
                for item in data:
                    if isinstance(item, tuple):
                        m = re.search(rb"UID (\d+)", item[0])
                        if m is None:
                            raise DovecotError("no UID in %r" % item[0][:200])
                        result.append((int(m.group(1)), item[1]))
            result.sort(key=lambda t: t[0])
            return result
        finally:
            try:
                conn.logout()
            except Exception:
                pass

    def server_hashes(self, folder, user=None):
        """{uid: sha256 hex} of what the server serves for folder."""
        return {uid: hashlib.sha256(raw).hexdigest()
                for uid, raw in self.server_messages(folder, user)}

    def seen_count(self, user=None):
        """Number of messages carrying \\Seen, over all folders."""
        out = self.doveadm("search", "SEEN", user=self._u(user))
        return sum(1 for line in out.splitlines() if line.strip())

    def total_count(self, user=None):
        """Number of messages over all folders."""
        out = self.doveadm("search", "ALL", user=self._u(user))
        return sum(1 for line in out.splitlines() if line.strip())
