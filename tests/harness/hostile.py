"""Hostile behaviours for the scripted server (fakeimap.FakeImap.handler).

Each function returns a handler(session, tag, cmd, args) -> bool that
answers some commands in a way no sane server would, and leaves the others
to fakeimap. `once=True` variants misbehave in the first session only, so a
test can see the engine recover on its retry.
"""
import random
import time

from fakeimap import _mailbox


def fetch_line(seq, uid, data, size=None, flags=b""):
    """One FETCH response with the body as a literal; SIZE may lie."""
    return (b"* %d FETCH (UID %d FLAGS (%s) INTERNALDATE \"02-Mar-2026 10:00:00 +0000\" "
            b"RFC822.SIZE %d BODY[] {%d}\r\n" % (seq, uid, flags, len(data) if size is None else size,
                                                len(data)) + data + b")\r\n")


def is_body_fetch(cmd, args):
    return cmd == b"UID FETCH" and b"BODY" in args.upper()


def chosen(session, args):
    """The (seq, uid, bytes) a UID FETCH asks for, from the selected folder."""
    from fakeimap import parse_set
    f = session.srv.folders[session.selected]
    msgs = sorted(f.messages, key=lambda m: m[0])
    star = msgs[-1][0] if msgs else 0
    ranges = parse_set(args.partition(b" ")[0], star)
    return [(i + 1, m[0], m[1]) for i, m in enumerate(msgs) if any(lo <= m[0] <= hi for lo, hi in ranges)]


def hold(session, seconds=60):
    """Keeps the connection open and silent until the client closes it."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if session.f.waiting(0.2):
            try:
                if not session.f._fill():
                    return
            except OSError:
                return
    return


def first_session(session):
    return session.number == 1


def garbage(seed=1):
    rnd = random.Random(seed)

    def h(s, tag, cmd, args):
        if cmd != b"LIST":
            return False
        junk = bytes(rnd.randrange(256) for _ in range(4000))
        s.send(b"* LIST () \"/\" INBOX\r\n" + junk + b"\r\n" + tag + b" OK done\r\n")
        return True
    return h


def huge_literal(size=1 << 40):
    def h(s, tag, cmd, args):
        if not is_body_fetch(cmd, args):
            return False
        s.send(b"* 1 FETCH (UID 1 RFC822.SIZE 10 BODY[] {%d}\r\n" % size + b"x" * 65536)
        hold(s)
        return True
    return h


def endless_line(limit=64 << 20):
    def h(s, tag, cmd, args):
        if cmd != b"LIST":
            return False
        s.send(b'* LIST () "/" "')
        chunk = b"a" * (1 << 20)
        sent = 0
        try:
            while sent < limit:     # the engine should hang up long before
                s.send(chunk)
                sent += len(chunk)
        except OSError:
            return True
        hold(s)
        return True
    return h


def wrong_tag():
    def h(s, tag, cmd, args):
        if cmd != b"LIST":
            return False
        s.send(b'* LIST () "/" INBOX\r\nzz9 OK done\r\n')
        hold(s)
        return True
    return h


def reused_tag():
    """Answers each EXAMINE, and then the command before it again."""
    state = {"prev": None}

    def h(s, tag, cmd, args):
        prev = state["prev"]
        state["prev"] = tag
        if cmd != b"EXAMINE" or prev is None:
            return False
        s.send(b"* 1 EXISTS\r\n" + tag + b" OK done\r\n" + prev + b" OK done again\r\n")
        hold(s)
        return True
    return h


def bye_mid_fetch():
    """First session: the first body FETCH gets one message, then BYE and a close."""
    def h(s, tag, cmd, args):
        if not (is_body_fetch(cmd, args) and first_session(s)):
            return False
        items = chosen(s, args)
        seq, uid, data = items[0]
        s.send(fetch_line(seq, uid, data) + b"* BYE [UNAVAILABLE] shutting down now\r\n")
        raise ValueError("closed after BYE")      # ends the session
    return h


def unsolicited(srv, folder=b"INBOX"):
    """During every body FETCH: EXISTS for mail that just arrived, EXPUNGE of
    a message of a later batch (first session), flag updates without a body,
    and a body for a UID nobody asked for."""
    state = {"expunged": None, "added": None}

    def h(s, tag, cmd, args):
        if not is_body_fetch(cmd, args):
            return False
        items = chosen(s, args)
        f = srv.folders[s.selected]
        out = []
        for seq, uid, data in items:
            out.append(fetch_line(seq, uid, data))
            out.append(b"* %d FETCH (FLAGS (\\Seen \\Flagged))\r\n" % seq)
            out.append(b"* %d FETCH (UID %d FLAGS ())\r\n" % (seq, uid))
        if s.selected == folder and state["added"] is None:
            with srv.lock:
                last = max(m[0] for m in f.messages)
                victim = [m for m in f.messages if m[0] == last][0]
                f.messages.remove(victim)
                state["expunged"] = victim[0]
                n = len(f.messages) + 1
                out.append(b"* %d EXPUNGE\r\n" % n)
                new_uid = last + 1
                from fakeimap import message
                f.messages.append([new_uid, message(9000 + new_uid), ""])
                state["added"] = new_uid
                out.append(b"* %d EXISTS\r\n" % len(f.messages))
        out.append(fetch_line(999, 99999, b"Subject: never asked for\r\n\r\nx\r\n"))
        s.send(b"".join(out) + tag + b" OK done\r\n")
        return True
    h.state = state
    return h


def uidvalidity_change(srv, folder=b"INBOX", new=2000):
    """The first body FETCH finds the folder recreated: new UIDVALIDITY, the
    same messages under other UIDs (reversed), announced with an untagged
    OK [UIDVALIDITY] before the data (what the old UIDs now name)."""
    state = {"done": False}

    def h(s, tag, cmd, args):
        if not is_body_fetch(cmd, args) or state["done"] or s.selected != folder:
            return False
        f = srv.folders[folder]
        with srv.lock:
            msgs = sorted(f.messages, key=lambda m: m[0])
            datas = [m[1] for m in msgs][::-1]
            for m, d in zip(msgs, datas):
                m[1] = d
            f.uidvalidity = new
            state["done"] = True
        s.send(b"* OK [UIDVALIDITY %d] UIDs are not valid any more\r\n" % new)
        return False      # the FETCH is answered from the new numbering
    return h


def many_folders(n):
    def h(s, tag, cmd, args):
        if cmd != b"LIST":
            return False
        lines = [b'* LIST () "/" INBOX\r\n']
        lines += [b'* LIST (\\HasNoChildren) "/" ' + _mailbox(b"Folder %06d" % i) + b"\r\n" for i in range(n)]
        for i in range(0, len(lines), 5000):
            s.send(b"".join(lines[i:i + 5000]))
        s.send(tag + b" OK done\r\n")
        return True
    return h


def size_lie(uid_big, big, claimed=10):
    """Claims CLAIMED bytes for UID_BIG (listing and FETCH) and sends BIG."""
    def h(s, tag, cmd, args):
        if cmd != b"UID FETCH":
            return False
        items = chosen(s, args)
        if b"BODY" not in args.upper():
            s.send(b"".join(b"* %d FETCH (UID %d RFC822.SIZE %d)\r\n" %
                            (seq, uid, claimed if uid == uid_big else len(d)) for seq, uid, d in items)
                   + tag + b" OK done\r\n")
            return True
        out = []
        for seq, uid, data in items:
            out.append(fetch_line(seq, uid, data, size=claimed if uid == uid_big else None))
        for part in out:
            s.send(part)
        s.send(tag + b" OK done\r\n")
        return True
    return h


def short_literal_flood(uid_big, flood=10 << 20):
    """Announces a 10-byte literal for UID_BIG and sends 10 MB after it."""
    def h(s, tag, cmd, args):
        if not is_body_fetch(cmd, args):
            return False
        for seq, uid, data in chosen(s, args):
            if uid != uid_big:
                s.send(fetch_line(seq, uid, data))
                continue
            s.send(b"* %d FETCH (UID %d RFC822.SIZE 10 BODY[] {10}\r\n" % (seq, uid) + data[:10])
            chunk = b"y" * (1 << 20)
            try:
                for _ in range(flood // len(chunk)):
                    s.send(chunk)
                s.send(b"\r\n")
            except OSError:
                return True
            hold(s)
            return True
        s.send(tag + b" OK done\r\n")
        return True
    return h
