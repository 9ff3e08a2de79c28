"""The IMAP view (docs/imap-view.md): emailvault.lua's serve = imap{...}, a
read-only IMAP server over the archive, against Python's imaplib and mbsync:
login, LIST, SELECT/EXAMINE, FETCH of every part kind (BODY[] byte-identical
to what was archived), SEARCH, IDLE seeing a newly archived message, every
write command refused, a user who cannot see another user's source, UIDs
that survive a restart, bad logins rate-limited."""
import hashlib
import imaplib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import dovecot
import mailgen
import vault
from vault import Engine, source_file

FIXTURES = os.path.join(vault.SOURCE_DIR, "tests", "fixtures", "mail")
PW = {"alice": "Alice-view-pw-41", "bob": "Bob-view-pw-77"}


def config(port, extra=""):
    return ('return {\n  serve = imap {\n    listen = "127.0.0.1:%d",\n%s'
            '    users = {\n'
            '      alice = { password = "%s", sources = { "work" } },\n'
            '      bob = { password = "%s", sources = { "home" } },\n'
            '    },\n  },\n}\n' % (port, extra, PW["alice"], PW["bob"]))


def connect(port, user="alice"):
    deadline = time.time() + 10
    while True:      # just after a start, the listener may not be up yet
        try:
            c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            break
        except ConnectionRefusedError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    c.login(user, PW[user])
    return c


def fetch_one(c, uid, item):
    """The bytes of ITEM (e.g. BODY.PEEK[TEXT]) of UID, as the server sent them."""
    typ, data = c.uid("FETCH", str(uid), "(%s)" % item)
    assert typ == "OK", (typ, data)
    for d in data:
        if isinstance(d, tuple):
            return d[1]
    raise AssertionError("no literal in %r" % (data,))


def header_end(raw):
    i = raw.find(b"\r\n\r\n")
    return i + 4 if i >= 0 else len(raw)


def uids_of(c):
    typ, data = c.uid("SEARCH", None, "ALL")
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


def mbsync_undo(data, name):
    """A file of mbsync's Maildir back to the bytes it fetched, LF for CRLF.
    mbsync changes exactly two things (isync's sync.c, copy_msg_convert): it
    stores lines with LF ends in a Maildir, and it adds one header line
    "X-TUID: " + 12 characters as the last of the header block, to find the
    message again if the run is interrupted. Anything else is a difference."""
    head, sep, body = data.partition(b"\n\n")
    lines = head.split(b"\n")
    assert sep and re.fullmatch(rb"X-TUID: [A-Za-z0-9+/]{12}", lines[-1]), (name, lines[-3:])
    return b"\n".join(lines[:-1]) + sep + body


class ImapViewTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = dovecot.Dovecot().start()
        cls.d.create_folders(["Archive", "Archive/2023"])
        cls.fixture_uid = {}
        for name in ("forwarded.eml", "text-attachment.eml", "qp-body.eml", "utf8-raw-headers.eml"):
            with open(os.path.join(FIXTURES, name), "rb") as f:
                cls.fixture_uid[name] = cls.d.deliver("INBOX", f.read(), flags=["\\Seen"])
        box = mailgen.build_mailbox({"INBOX": 30, "Archive": 12, "Archive/2023": 8}, seed=14, duplicates=3)
        cls.d.fill(box)
        cls.big_uid = cls.d.deliver("Archive", b"Subject: big one\r\nFrom: Big <big@example.org>\r\n\r\n" +
                                    (b"0123456789abcdef" * 64 + b"\r\n") * 2000)
        cls.server = {}
        for folder in ("INBOX", "Archive", "Archive/2023"):
            cls.server[folder] = dict(cls.d.server_messages(folder))
        cls.port = dovecot.free_ports(1)[0]
        cls.e = Engine()
        common = dict(port=cls.d.tls_port, username=cls.d.user, password=cls.d.password,
                      ca_file='"%s"' % cls.d.cert_path)
        cls.e.write_source("work", source_file(**common))
        cls.e.write_source("home", source_file(folders='{ include = { "Archive" } }', **common))
        cls.e.write_config(config(cls.port))
        cls.e.start()
        deadline = time.time() + 120
        while time.time() < deadline:
            st = {s["id"]: s for s in cls.e.eval("return { vault.status(\"work\"), vault.status(\"home\") }")}
            if all(s["status"] == "active" for s in st.values()) and len(st) == 2 and \
                    all(s.get("index_lag") == 0 for s in st.values()):
                break
            time.sleep(0.3)
        else:
            raise AssertionError("sources not active: %s\n%s" % (st, cls.e.log()[-3000:]))

    @classmethod
    def tearDownClass(cls):
        try:
            cls.e.stop()
        finally:
            cls.e.cleanup()
            cls.d.stop()

    def setUp(self):
        self.c = connect(self.port)

    def tearDown(self):
        try:
            self.c.logout()
        except Exception:
            pass

    def examine(self, name, c=None):
        c = c or self.c
        typ, data = c.select('"%s"' % name, readonly=True)
        self.assertEqual(typ, "OK", data)
        return int(data[0])

    # ---- logging in, the tree -------------------------------------------------------
    def test_login_logged_without_password(self):
        self.assertTrue(self.e.wait_for_log(r"imap view: login user=alice addr=127\.0\.0\.1"))
        with self.assertRaises(imaplib.IMAP4.error):
            imaplib.IMAP4("127.0.0.1", self.port).login("alice", "not-the-password")
        self.assertTrue(self.e.wait_for_log(r"login failed user=alice .*reason=\"wrong password\""))
        log = self.e.log()
        for pw in list(PW.values()) + ["not-the-password"]:
            self.assertNotIn(pw, log)

    def test_authenticate_plain(self):
        c = imaplib.IMAP4("127.0.0.1", self.port)
        typ, _ = c.authenticate("PLAIN", lambda _: b"\0bob\0" + PW["bob"].encode())
        self.assertEqual(typ, "OK")
        self.assertEqual(c.state, "AUTH")
        c.logout()

    def test_list_shows_the_users_sources_only(self):
        typ, data = self.c.list()
        self.assertEqual(typ, "OK")
        names = {re.search(rb'"/" "?([^"]*)"?$', l).group(1).decode(): l for l in data}
        for n in ("All", "work", "work/INBOX", "work/Archive", "work/Archive/2023"):
            self.assertIn(n, names)
        self.assertFalse([n for n in names if n.startswith("home")])
        self.assertIn(b"\\Noselect", names["work"])
        self.assertIn(b"\\All", names["All"])
        self.assertIn(b"\\HasChildren", names["work/Archive"])
        typ, data = self.c.list("work/", "%")
        level = [re.search(rb'"/" "?([^"]*)"?$', l).group(1) for l in data]
        self.assertIn(b"work/Archive", level)
        self.assertIn(b"work/INBOX", level)
        self.assertNotIn(b"work/Archive/2023", level)      # % stops at the separator
        typ, data = self.c.lsub()
        self.assertEqual(typ, "OK")
        typ, data = self.c.status("work/INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
        self.assertEqual(typ, "OK")
        m = re.search(rb"MESSAGES (\d+)", data[0])
        self.assertEqual(int(m.group(1)), len(self.server["INBOX"]))

    def test_other_users_source_is_invisible(self):
        bob = connect(self.port, "bob")
        try:
            typ, data = bob.select('"work/INBOX"', readonly=True)
            self.assertEqual(typ, "NO")
            self.assertIn(b"NONEXISTENT", data[0])
            typ, data = bob.status("work/INBOX", "(MESSAGES)")
            self.assertEqual(typ, "NO")
            typ, data = bob.list()
            self.assertFalse([l for l in data if b"work" in l], data)
            # bob's All is the Archive folder (home's only folder), nothing of alice's INBOX
            n = self.examine("All", bob)
            self.assertEqual(n, len(set(self.server["Archive"].values())))
            for uid in uids_of(bob):
                self.assertIn(fetch_one(bob, uid, "BODY.PEEK[]"), set(self.server["Archive"].values()))
        finally:
            bob.logout()
        typ, data = self.c.select('"home/Archive"', readonly=True)
        self.assertEqual(typ, "NO")

    # ---- SELECT and FETCH --------------------------------------------------------------
    def test_select_is_read_only(self):
        # imaplib raises when a SELECT it did not ask read-only comes back [READ-ONLY]
        with self.assertRaises(imaplib.IMAP4.readonly):
            self.c.select('"work/INBOX"')
        self.assertEqual(self.c.state, "SELECTED")
        self.assertEqual(int(self.c.untagged_responses["EXISTS"][-1]), len(self.server["INBOX"]))

    def test_body_byte_identical_in_every_folder(self):
        for folder, msgs in self.server.items():
            n = self.examine("work/" + folder)
            self.assertEqual(n, len(msgs))
            uids = uids_of(self.c)
            typ, data = self.c.uid("FETCH", "1:*", "(UID RFC822.SIZE BODY.PEEK[])")
            self.assertEqual(typ, "OK")
            got = [d[1] for d in data if isinstance(d, tuple)]
            sizes = [int(re.search(rb"RFC822.SIZE (\d+)", d[0]).group(1)) for d in data if isinstance(d, tuple)]
            self.assertEqual(len(got), len(uids))
            # in the server's order: the view's UIDs follow the archived UIDs
            self.assertEqual(got, [msgs[u] for u in sorted(msgs)], folder)
            self.assertEqual(sizes, [len(b) for b in got])
        # the big one streamed in chunks, and by sequence number with BODY[]
        self.examine("work/Archive")
        big = self.server["Archive"][self.big_uid]
        typ, data = self.c.fetch(str(len(self.server["Archive"])), "(BODY[])")
        self.assertEqual([d[1] for d in data if isinstance(d, tuple)], [big])

    def test_all_has_each_message_once(self):
        n = self.examine("All")
        distinct = set()
        for msgs in self.server.values():
            distinct |= set(msgs.values())
        self.assertEqual(n, len(distinct))
        typ, data = self.c.fetch("1:*", "(BODY.PEEK[])")
        self.assertEqual(sorted(d[1] for d in data if isinstance(d, tuple)), sorted(distinct))

    def test_sections_and_partials(self):
        self.examine("work/INBOX")
        raw = self.server["INBOX"][self.fixture_uid["forwarded.eml"]]
        uid = uids_of(self.c)[list(sorted(self.server["INBOX"])).index(self.fixture_uid["forwarded.eml"])]
        he = header_end(raw)
        self.assertEqual(fetch_one(self.c, uid, "BODY.PEEK[HEADER]"), raw[:he])
        self.assertEqual(fetch_one(self.c, uid, "BODY.PEEK[TEXT]"), raw[he:])
        self.assertEqual(fetch_one(self.c, uid, "RFC822.HEADER"), raw[:he])
        self.assertEqual(fetch_one(self.c, uid, "BODY.PEEK[]<5.20>"), raw[5:25])
        self.assertEqual(fetch_one(self.c, uid, "BODY.PEEK[TEXT]<3.7>"), raw[he + 3:he + 10])
        fields = fetch_one(self.c, uid, "BODY.PEEK[HEADER.FIELDS (Subject MESSAGE-ID)]")
        self.assertEqual(fields, b"Message-ID: <forwarded@fixtures.example>\r\nSubject: Fwd: something\r\n\r\n")
        notf = fetch_one(self.c, uid, "BODY.PEEK[HEADER.FIELDS.NOT (Subject)]")
        self.assertNotIn(b"Subject:", notf)
        self.assertIn(b"Message-ID:", notf)
        # parts: 1 is the text, 2 the attached message, 2.1 its text, 2.2 the zip
        self.assertEqual(fetch_one(self.c, uid, "BODY.PEEK[1]"), b"See the forwarded message.")
        self.assertEqual(fetch_one(self.c, uid, "BODY.PEEK[1.MIME]"), b"Content-Type: text/plain\r\n\r\n")
        inner = fetch_one(self.c, uid, "BODY.PEEK[2]")
        self.assertTrue(inner.startswith(b"From: Inner Author"), inner[:60])
        self.assertIn(inner, raw)
        ih = fetch_one(self.c, uid, "BODY.PEEK[2.HEADER]")
        self.assertEqual(ih, inner[:header_end(inner)])
        self.assertEqual(fetch_one(self.c, uid, "BODY.PEEK[2.TEXT]"), inner[header_end(inner):])
        self.assertEqual(fetch_one(self.c, uid, "BODY.PEEK[2.1]"),
                         b"Forwarded text forwardedbodyword caf=C3=A9.")
        self.assertIn(b"innerarchive.zip", fetch_one(self.c, uid, "BODY.PEEK[2.2.MIME]"))
        typ, data = self.c.uid("FETCH", str(uid), "(BODYSTRUCTURE ENVELOPE FLAGS INTERNALDATE)")
        self.assertEqual(typ, "OK")
        text = b"".join(d if isinstance(d, bytes) else d[0] + d[1] for d in data)
        self.assertIn(b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 26 1', text)
        self.assertIn(b'"MESSAGE" "RFC822"', text)
        self.assertIn(b'"APPLICATION" "ZIP" ("NAME" "innerarchive.zip")', text)
        self.assertIn(b'"MIXED" ("BOUNDARY" "outer")', text)
        self.assertIn(b'ENVELOPE ("Mon, 3 Jun 2024 10:00:00 +0000" "Fwd: something" '
                      b'(("Fixture Sender" NIL "sender" "example.org"))', text)
        self.assertIn(b"\\Seen", text)
        self.assertIn(b'INTERNALDATE "', text)
        # a part that is not there
        typ, data = self.c.uid("FETCH", str(uid), "(BODY.PEEK[9])")
        self.assertEqual(typ, "OK")
        self.assertIn(b"BODY[9] NIL", data[0])

    def test_fetch_does_not_set_seen(self):
        self.examine("work/Archive")
        typ, data = self.c.fetch("1", "(BODY[] FLAGS)")
        typ, data = self.c.fetch("1", "(FLAGS)")
        self.assertNotIn(b"\\Seen", data[0])

    def test_malformed_commands_are_bad(self):
        self.examine("work/INBOX")
        for args in (("1", "(BODY[NOPE])"), ("x", "(FLAGS)"), ("99999", "(FLAGS)")):
            with self.assertRaises(imaplib.IMAP4.error, msg=args):
                self.c.fetch(*args)
        with self.assertRaises(imaplib.IMAP4.error):
            self.c.search(None, "WHATEVER")
        typ, _ = self.c.noop()
        self.assertEqual(typ, "OK")

    # ---- SEARCH ---------------------------------------------------------------------
    def test_search(self):
        self.examine("work/INBOX")
        uids = uids_of(self.c)
        order = sorted(self.server["INBOX"])
        fwd = uids[order.index(self.fixture_uid["forwarded.eml"])]
        typ, data = self.c.uid("SEARCH", None, "SUBJECT", "something")
        self.assertEqual(data[0].split(), [str(fwd).encode()])
        typ, data = self.c.uid("SEARCH", None, "BODY", "forwardedbodyword")
        self.assertEqual(data[0].split(), [str(fwd).encode()])
        typ, data = self.c.uid("SEARCH", None, "FROM", "sender@example.org", "SEEN")
        self.assertIn(str(fwd).encode(), data[0].split())
        typ, data = self.c.uid("SEARCH", None, "TEXT", "innersubjectword")
        self.assertEqual(data[0].split(), [str(fwd).encode()])
        typ, data = self.c.search(None, "NOT", "SEEN")
        seen = {self.fixture_uid[n] for n in self.fixture_uid}
        want = [str(i + 1).encode() for i, u in enumerate(order) if u not in seen]
        self.assertEqual(data[0].split(), want)
        typ, data = self.c.search(None, "OR", "SUBJECT", "something", "LARGER", "100000000")
        self.assertEqual(data[0].split(), [str(order.index(self.fixture_uid["forwarded.eml"]) + 1).encode()])
        typ, data = self.c.search(None, "SENTBEFORE", "4-Jun-2024", "SENTSINCE", "3-Jun-2024")
        self.assertIn(str(order.index(self.fixture_uid["forwarded.eml"]) + 1).encode(), data[0].split())
        typ, data = self.c.search(None, "1:3", "UID", "%d:*" % uids[1])
        self.assertEqual(data[0].split(), [b"2", b"3"])
        typ, data = self.c.search("UTF-8", "ALL")
        self.assertEqual(len(data[0].split()), len(uids))
        typ, data = self.c.search("KOI8-R", "ALL")
        self.assertEqual(typ, "NO")
        self.assertIn(b"BADCHARSET", data[0])

    # ---- writes -----------------------------------------------------------------------
    def test_every_write_is_refused(self):
        self.examine("work/INBOX")
        cmds = [("STORE", "1", "+FLAGS", "(\\Seen)"), ("UID STORE", "1", "+FLAGS", "(\\Seen)"),
                ("COPY", "1", "All"), ("UID COPY", "1", "All"), ("MOVE", "1", "All"),
                ("UID MOVE", "1", "All"), ("EXPUNGE",), ("UID EXPUNGE", "1"),
                ("CREATE", "work/New"), ("DELETE", "work/INBOX"), ("RENAME", "work/INBOX", "x"),
                ("SUBSCRIBE", "work/INBOX"), ("UNSUBSCRIBE", "work/INBOX")]
        for cmd in cmds:
            tag = self.c._new_tag().decode()
            self.c.send(("%s %s\r\n" % (tag, " ".join(cmd))).encode())
            line = self.c._get_line()
            while not line.startswith(tag.encode()):
                line = self.c._get_line()
            self.assertRegex(line.decode(), r"^%s NO \[CANNOT\] the archive is read-only" % tag, cmd)
        typ, data = self.c.append("work/INBOX", None, None, b"Subject: x\r\n\r\nx\r\n")
        self.assertEqual(typ, "NO")
        self.assertIn(b"read-only", data[0])
        # nothing changed
        typ, data = self.c.fetch("1:*", "(FLAGS)")
        self.assertEqual(sum(b"\\Seen" in l for l in data), len(self.fixture_uid))

    # ---- IDLE, restarts -------------------------------------------------------------
    def test_idle_sees_newly_archived_mail(self):
        n = self.examine("work/INBOX")
        tag = self.c._new_tag().decode()
        self.c.send(("%s IDLE\r\n" % tag).encode())
        self.assertTrue(self.c._get_line().startswith(b"+"))
        raw = b"Subject: idle arrival\r\nFrom: New <new@example.org>\r\n\r\nfresh\r\n"
        self.d.deliver("INBOX", raw)
        self.c.sock.settimeout(60)
        line = self.c._get_line()
        self.assertEqual(line, ("* %d EXISTS" % (n + 1)).encode())
        self.c.send(b"DONE\r\n")
        self.assertTrue(self.c._get_line().startswith(("%s OK" % tag).encode()))
        body = fetch_one(self.c, uids_of(self.c)[-1], "BODY.PEEK[]")
        self.assertEqual(body, raw)
        type(self).server["INBOX"] = dict(self.d.server_messages("INBOX"))

    def test_uids_survive_a_restart(self):
        self.examine("work/INBOX")
        before = (self.c.untagged_responses.get("UIDVALIDITY"), uids_of(self.c),
                  [hashlib.sha256(fetch_one(self.c, u, "BODY.PEEK[]")).hexdigest() for u in uids_of(self.c)])
        self.c.logout()
        self.e.stop()
        self.e.start()
        self.c = connect(self.port)
        self.examine("work/INBOX")
        after = (self.c.untagged_responses.get("UIDVALIDITY"), uids_of(self.c),
                 [hashlib.sha256(fetch_one(self.c, u, "BODY.PEEK[]")).hexdigest() for u in uids_of(self.c)])
        self.assertEqual(before, after)

    # ---- a second real client -------------------------------------------------------
    @unittest.skipUnless(shutil.which("mbsync"), "mbsync (Debian isync) is not installed")
    def test_mbsync_pulls_the_archive_back(self):
        tmp = tempfile.mkdtemp(prefix="ev-mbsync-")
        try:
            os.makedirs(os.path.join(tmp, "mail"))
            rc = os.path.join(tmp, "mbsyncrc")
            with open(rc, "w") as f:
                f.write("IMAPAccount ev\nHost 127.0.0.1\nPort %d\nUser alice\nPass %s\n"
                        "SSLType None\nAuthMechs LOGIN\n\n"
                        "IMAPStore ev-far\nAccount ev\n\n"
                        "MaildirStore near\nPath %s/mail/\nInbox %s/mail/INBOX\nSubFolders Verbatim\n\n"
                        "Channel ev\nFar :ev-far:work/\nNear :near:\nPatterns *\nCreate Near\n"
                        "Sync Pull\nExpunge None\nSyncState *\n" % (self.port, PW["alice"], tmp, tmp))
            r = subprocess.run(["mbsync", "-c", rc, "ev"], capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            # hashes, not bytes: a failure's diff of megabytes takes minutes
            lf = lambda m: hashlib.sha256(m.replace(b"\r\n", b"\n")).hexdigest()
            for folder, msgs in self.server.items():
                got = []     # (message, seen) as mbsync stored them
                for sub in ("cur", "new"):
                    d = os.path.join(tmp, "mail", folder, sub)
                    for name in os.listdir(d):
                        with open(os.path.join(d, name), "rb") as f:
                            got.append((hashlib.sha256(mbsync_undo(f.read(), name)).hexdigest(),
                                        "S" in name.rpartition(":2,")[2]))
                want = []    # (message, seen) as the view serves them
                self.examine("work/" + folder)
                for uid in uids_of(self.c):
                    typ, data = self.c.uid("FETCH", str(uid), "(FLAGS)")
                    want.append((lf(fetch_one(self.c, uid, "BODY.PEEK[]")), b"\\Seen" in data[0]))
                self.assertEqual(sorted(got), sorted(want), folder)
                # and those are the bytes that were archived, with their flags
                self.assertEqual(sorted(m for m, _ in got), sorted(lf(m) for m in msgs.values()), folder)
                self.assertTrue(any(s for _, s in got) or folder != "INBOX", "no \\Seen message pulled")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class LoginLimitTest(unittest.TestCase):
    """Failed logins are answered late and, past a few from one address, refused
    even with the right password."""

    def test_bad_logins_rate_limited(self):
        port = dovecot.free_ports(1)[0]
        with Engine() as e:
            e.write_config(config(port))
            e.start()
            e.wait_for_log(r"imap view listening")
            for i in range(5):
                c = imaplib.IMAP4("127.0.0.1", port)
                t = time.time()
                with self.assertRaises(imaplib.IMAP4.error):
                    c.login("alice", "wrong-%d" % i)
                self.assertGreaterEqual(time.time() - t, 0.9)
                c.shutdown()
            c = imaplib.IMAP4("127.0.0.1", port)
            with self.assertRaises(imaplib.IMAP4.error) as cm:
                c.login("alice", PW["alice"])
            self.assertIn("UNAVAILABLE", str(cm.exception))
            c.shutdown()
            self.assertTrue(e.wait_for_log(r"logins from this address refused for a while"))
            self.assertTrue(e.log_has(r'reason="too many failures from this address"'))
            for i in range(5):
                self.assertNotIn("wrong-%d" % i, e.log())
            self.assertNotIn(PW["alice"], e.log())


class CheckTest(unittest.TestCase):
    def test_check_validates_serve(self):
        d = tempfile.mkdtemp(prefix="ev-servecheck-")
        try:
            os.makedirs(os.path.join(d, "sources.d"))
            path = os.path.join(d, "emailvault.lua")

            def check(text):
                with open(path, "w") as f:
                    f.write(text)
                return vault.run("check", "--sources", os.path.join(d, "sources.d"), "--config", path)

            r = check(config(1993))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("IMAP view on 127.0.0.1:1993 for 2 users", r.stdout)
            r = check('return { serve = imap { listen = "0.0.0.0:1993", users = { a = { password = "x", sources = { "w" } } } } }\n')
            self.assertEqual(r.returncode, 1)
            self.assertIn(":1: serve: plain IMAP on 0.0.0.0:1993 would send passwords in the clear", r.stderr)
            r = check('return { serve = imap { listen = "127.0.0.1", tls = true, users = {} } }\n')
            self.assertEqual(r.returncode, 1)
            self.assertIn("serve.listen: expected an address and port", r.stderr)
            self.assertIn("serve.users: no users", r.stderr)
            r = check('return { serve = imap { listen = "127.0.0.1:1", users = { a = { password = 5, sources = {} } } } }\n')
            self.assertIn("serve.users: a.password: expected a string", r.stderr)
            r = check('return { serve = imap { listen = "127.0.0.1:1", tls = true, users = { a = { password = "x", sources = { "w" } } } } }\n')
            self.assertIn("serve: tls = true needs cert_file and key_file", r.stderr)
            r = check('return { serve = { listen = "127.0.0.1:1" } }\n')
            self.assertIn("serve: expected imap { ... }", r.stderr)
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
