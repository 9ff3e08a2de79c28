"""A scripted IMAP server on 127.0.0.1 for misbehaviour Dovecot never shows.

It serves a small in-memory mailbox over plaintext (sources use tls = false)
and speaks just enough IMAP4rev1 for the engine: CAPABILITY, LOGIN,
AUTHENTICATE PLAIN, LIST, STATUS, EXAMINE, UID FETCH, NOOP, IDLE, LOGOUT.
A test bends it through attributes of the server::

    srv = FakeImap({"INBOX": [msg1, msg2]})
    srv.body_form = lambda folder, uid: "quoted" if uid == 2 else "literal"
    ... source_file(port=srv.port, tls="false", ...)

Hooks (all optional; FOLDER is the name as bytes, as LIST shows it):
- body_form(folder, uid): "literal" (default), "quoted", "nil", "omit" (a
  FETCH response without BODY[]) or "none" (no FETCH response at all).
- fetch_no(folder, uids): text for a tagged NO to the body FETCH of UIDS (a
  list), or None. The UIDs in `refuse` get no response, Gmail-style.
- refuse(folder, uid): True when the server will not give this message (it is
  left out of the body FETCH, which then ends with fetch_no's text).
- examine_extra(folder): extra untagged lines (bytes) for EXAMINE.
- uidvalidity_text(folder): the UIDVALIDITY value as sent (bytes).
- sizes_lines(folder, lines): the (UID RFC822.SIZE) answer lines, to change.
- internaldate(folder, uid): the INTERNALDATE text.
- examine_no(folder): text for a tagged NO to EXAMINE, or None.
- send_uidnext: False leaves UIDNEXT out of EXAMINE (it is optional).
- late_completion: True sends the tagged OK of a body FETCH only after the
  data of the next pipelined command (RFC 3501 5.5 allows it; Dovecot does).
- auth_no(line): the text of the tagged NO to a failed login, given the
  command line (a server that quotes it back, credentials and all).
- handler(session, tag, cmd, args): called first for every command after
  login; returns True when it answered (tests/harness/hostile.py uses it).
Every command line received is kept in `commands` (bytes, tag stripped);
`sessions` counts connections.
"""
import base64
import re
import select
import socket
import threading
import time

DEFAULT_USER = "fake"
DEFAULT_PASSWORD = "fake-password-1"

CAPS = b"IMAP4rev1 AUTH=PLAIN SASL-IR IDLE"


def message(n, subject=None, size=0):
    """A small RFC 5322 message, unique per N, padded to about SIZE bytes."""
    body = "Message number %d.\r\n" % n
    if size > len(body):
        body += ("x" * 70 + "\r\n") * ((size - len(body)) // 72 + 1)
    return ("From: Sender <sender@example.com>\r\n"
            "To: Fake <fake@example.com>\r\n"
            "Subject: %s\r\n"
            "Message-ID: <fake-%d@example.com>\r\n"
            "Date: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
            "\r\n%s" % (subject or "Test %d" % n, n, body)).encode()


class Folder:
    def __init__(self, name, messages, uidvalidity=1000, first_uid=1):
        self.name = name                      # bytes, as LIST sends it
        self.uidvalidity = uidvalidity
        self.messages = []                    # [uid, bytes, flags]
        uid = first_uid
        for m in messages:
            if isinstance(m, tuple):          # (uid, bytes)
                uid, m = m
            self.messages.append([uid, m, ""])
            uid += 1

    def uidnext(self):
        return (max(m[0] for m in self.messages) + 1) if self.messages else 1

    def by_uid(self, uid):
        for m in self.messages:
            if m[0] == uid:
                return m
        return None


class FakeImap:
    def __init__(self, folders=None, user=DEFAULT_USER, password=DEFAULT_PASSWORD,
                 caps=CAPS, uidvalidity=1000):
        self.user, self.password, self.caps = user, password, caps
        self.folders = {}
        for name, msgs in (folders or {"INBOX": []}).items():
            raw = name if isinstance(name, bytes) else name.encode()
            self.folders[raw] = Folder(raw, msgs, uidvalidity)
        self.commands = []
        self.lock = threading.Lock()
        self.body_form = lambda folder, uid: "literal"
        self.refuse = lambda folder, uid: False
        self.fetch_no = lambda folder, uids: None
        self.examine_extra = lambda folder: []
        self.uidvalidity_text = lambda folder: str(self.folders[folder].uidvalidity).encode()
        self.sizes_lines = lambda folder, lines: lines
        self.internaldate = lambda folder, uid: b"02-Mar-2026 10:00:00 +0000"
        self.examine_no = lambda folder: None
        self.send_uidnext = True
        self.late_completion = False
        self.handler = None
        self.auth_no = lambda line: b"[AUTHENTICATIONFAILED] wrong"
        self.sessions = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    # -- for tests ------------------------------------------------------
    def add(self, folder, data):
        """Appends a message to FOLDER (str or bytes); returns its UID."""
        raw = folder if isinstance(folder, bytes) else folder.encode()
        with self.lock:
            f = self.folders[raw]
            uid = f.uidnext()
            f.messages.append([uid, data, ""])
            return uid

    def fetch_commands(self):
        return [c for c in self.commands if c.upper().startswith(b"UID FETCH")]

    def close(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in list(self.conns):
            try:
                c.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- serving --------------------------------------------------------
    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            with self.lock:
                self.sessions += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        s = _Session(self, conn)
        try:
            s.run()
        except (OSError, ValueError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


def _quote(b):
    return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _mailbox(b):
    if re.fullmatch(rb"[A-Za-z0-9_./&+,-]+", b):
        return b
    if any(c >= 0x80 or c in b"\r\n" for c in b):
        return b"{%d}\r\n" % len(b) + b
    return _quote(b)


def parse_set(text, star):
    out = []
    for part in text.split(b","):
        if b":" in part:
            a, b = part.split(b":", 1)
            lo = star if a == b"*" else int(a)
            hi = star if b == b"*" else int(b)
            if lo > hi:
                lo, hi = hi, lo
            out.append((lo, hi))
        else:
            v = star if part == b"*" else int(part)
            out.append((v, v))
    return out


class _Reader:
    """Buffered reading of a socket that can tell whether input is waiting."""

    def __init__(self, conn):
        self.conn, self.buf = conn, b""

    def _fill(self):
        data = self.conn.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def waiting(self, timeout):
        return bool(self.buf) or bool(select.select([self.conn], [], [], timeout)[0])

    def readline(self, limit=1 << 20):
        while b"\n" not in self.buf and len(self.buf) < limit:
            if not self._fill():
                break
        i = self.buf.find(b"\n")
        n = i + 1 if i >= 0 else len(self.buf)
        line, self.buf = self.buf[:n], self.buf[n:]
        return line

    def read(self, n):
        while len(self.buf) < n:
            if not self._fill():
                break
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


class _Session:
    def __init__(self, srv, conn):
        self.srv, self.conn = srv, conn
        self.number = srv.sessions        # 1 for the first connection
        self.f = _Reader(conn)
        self.selected = None
        self.deferred = b""       # a tagged completion held back (late_completion)

    def send(self, data):
        self.conn.sendall(data)

    def read_command(self):
        """One command with its literals, as one bytes value; None at EOF."""
        if self.deferred and not self.f.waiting(0.2):
            self.send(self.deferred)      # no next command came: complete this one now
            self.deferred = b""
        parts = []
        while True:
            line = self.f.readline(1 << 20)
            if not line:
                return None
            m = re.search(rb"\{(\d+)(\+?)\}\r\n$", line)
            if not m:
                parts.append(line.rstrip(b"\r\n"))
                return b"".join(parts)
            parts.append(line[:m.start()])
            if not m.group(2):
                self.send(b"+ go ahead\r\n")
            n = int(m.group(1))
            data = self.f.read(n)
            parts.append(_quote(data) if b"\r" not in data else data)

    def run(self):
        self.send(b"* OK [CAPABILITY " + self.srv.caps + b"] fake ready\r\n")
        authed = False
        while True:
            line = self.read_command()
            if line is None:
                return
            tag, _, rest = line.partition(b" ")
            if self.deferred and not rest.upper().startswith(b"UID FETCH"):
                self.send(self.deferred)
                self.deferred = b""
            with self.srv.lock:
                self.srv.commands.append(rest)
            cmd, _, args = rest.partition(b" ")
            cmd = cmd.upper()
            if cmd == b"UID":
                sub, _, args = args.partition(b" ")
                cmd = b"UID " + sub.upper()
            if cmd == b"CAPABILITY":
                self.send(b"* CAPABILITY " + self.srv.caps + b"\r\n" + tag + b" OK done\r\n")
            elif cmd == b"NOOP" or cmd == b"ID":
                self.send(tag + b" OK done\r\n")
            elif cmd == b"LOGOUT":
                self.send(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                return
            elif cmd == b"AUTHENTICATE":
                mech, _, ir = args.partition(b" ")
                if not ir:
                    self.send(b"+ \r\n")
                    ir = self.f.readline().strip()
                try:
                    _, user, pw = base64.b64decode(ir).split(b"\0")
                except ValueError:
                    user = pw = b""
                authed = self.login(tag, user, pw, rest + b" " + ir)
            elif cmd == b"LOGIN":
                toks = re.findall(rb'"((?:[^"\\]|\\.)*)"|(\S+)', args)
                vals = [(q.replace(b'\\"', b'"').replace(b"\\\\", b"\\") if q else a) for q, a in toks]
                authed = self.login(tag, *(vals + [b"", b""])[:2], rest)
            elif not authed:
                self.send(tag + b" NO log in first\r\n")
            elif self.srv.handler and self.srv.handler(self, tag, cmd, args):
                pass
            elif cmd == b"LIST":
                self.list(tag)
            elif cmd == b"STATUS":
                self.status(tag, args)
            elif cmd in (b"EXAMINE", b"SELECT"):
                self.examine(tag, args)
            elif cmd == b"UID FETCH":
                self.uid_fetch(tag, args)
            elif cmd == b"IDLE":
                self.send(b"+ idling\r\n")
                while True:
                    l = self.f.readline()
                    if not l or l.strip().upper() == b"DONE":
                        break
                self.send(tag + b" OK idle done\r\n")
            else:
                self.send(tag + b" BAD unknown command\r\n")

    def login(self, tag, user, pw, line=b""):
        if user == self.srv.user.encode() and pw == self.srv.password.encode():
            self.send(tag + b" OK [CAPABILITY " + self.srv.caps + b"] logged in\r\n")
            return True
        self.send(tag + b" NO " + self.srv.auth_no(line) + b"\r\n")
        return False

    def mailbox_arg(self, args):
        args = args.strip()
        if args.startswith(b'"'):
            m = re.match(rb'"((?:[^"\\]|\\.)*)"', args)
            name = m.group(1).replace(b'\\"', b'"').replace(b"\\\\", b"\\")
            return name, args[m.end():].strip()
        name, _, rest = args.partition(b" ")
        return name, rest

    def list(self, tag):
        out = []
        with self.srv.lock:
            for name in self.srv.folders:
                out.append(b'* LIST () "/" ' + _mailbox(name) + b"\r\n")
        self.send(b"".join(out) + tag + b" OK done\r\n")

    def status(self, tag, args):
        name, _ = self.mailbox_arg(args)
        f = self.srv.folders.get(name)
        if f is None:
            self.send(tag + b" NO [NONEXISTENT] no such folder\r\n")
            return
        self.send(b"* STATUS " + _mailbox(name) + b" (MESSAGES %d UIDNEXT %d UIDVALIDITY %s)\r\n"
                  % (len(f.messages), f.uidnext(), self.srv.uidvalidity_text(name)) + tag + b" OK done\r\n")

    def examine(self, tag, args):
        name, _ = self.mailbox_arg(args)
        f = self.srv.folders.get(name)
        if f is None:
            self.send(tag + b" NO [NONEXISTENT] no such folder\r\n")
            return
        no = self.srv.examine_no(name)
        if no:
            self.send(tag + b" NO " + no.encode() + b"\r\n")
            return
        self.selected = name
        lines = [b"* %d EXISTS\r\n" % len(f.messages), b"* 0 RECENT\r\n",
                 b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
                 b"* OK [UIDVALIDITY " + self.srv.uidvalidity_text(name) + b"] ok\r\n",
                 ]
        if self.srv.send_uidnext:
            lines.append(b"* OK [UIDNEXT %d] ok\r\n" % f.uidnext())
        lines += self.srv.examine_extra(name)
        self.send(b"".join(lines) + tag + b" OK [READ-ONLY] done\r\n")

    def uid_fetch(self, tag, args):
        f = self.srv.folders.get(self.selected)
        if f is None:
            self.send(tag + b" BAD nothing selected\r\n")
            return
        setspec, _, items = args.partition(b" ")
        with self.srv.lock:
            msgs = sorted(f.messages, key=lambda m: m[0])
        star = msgs[-1][0] if msgs else 0
        ranges = parse_set(setspec, star)
        chosen = [m for m in msgs if any(lo <= m[0] <= hi for lo, hi in ranges)]
        # "n:*" names the highest UID even when it is below n (RFC 3501 6.4.8)
        if not chosen and msgs and any(b"*" in p for p in setspec.split(b",")):
            chosen = [msgs[-1]]
        out = []
        seqs = {m[0]: i + 1 for i, m in enumerate(msgs)}
        if b"BODY" not in items.upper():
            lines = [b"* %d FETCH (UID %d RFC822.SIZE %d)\r\n" % (seqs[m[0]], m[0], len(m[1]))
                     for m in chosen]
            lines = self.srv.sizes_lines(self.selected, lines)
            for i in range(0, len(lines), 2000):
                self.send(b"".join(lines[i:i + 2000]))
            self.send(tag + b" OK done\r\n")
            return
        uids = [m[0] for m in chosen]
        for uid, data, flags in chosen:
            if self.srv.refuse(self.selected, uid):
                continue
            form = self.srv.body_form(self.selected, uid)
            head = b"* %d FETCH (UID %d FLAGS (%s) INTERNALDATE \"%s\" RFC822.SIZE %d" % (
                seqs[uid], uid, flags.encode(), self.srv.internaldate(self.selected, uid), len(data))
            if form == "none":
                continue
            if form == "omit":
                out.append(head + b")\r\n")
            elif form == "nil":
                out.append(head + b" BODY[] NIL)\r\n")
            elif form == "quoted":
                out.append(head + b" BODY[] " + _quote(data) + b")\r\n")
            else:
                out.append(head + b" BODY[] {%d}\r\n" % len(data) + data + b")\r\n")
        no = self.srv.fetch_no(self.selected, uids)
        done = tag + ((b" NO " + no.encode()) if no else b" OK done") + b"\r\n"
        if self.srv.late_completion:
            self.send(b"".join(out) + self.deferred)
            self.deferred = done
        else:
            self.send(b"".join(out) + done)
