"""Finding and taking out, end to end through the real binary and Dovecot:
the indexer beside the import, a word only in one encoded spot finds
exactly its message, every script, the operators, malformed queries, show,
export (mbox, eml, maildir) and its round trips, reindex and verify."""
import base64
import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest

import archivecheck
import dovecot
import mailgen
import vault
from vault import Engine, source_file

FIXTURES = os.path.join(vault.SOURCE_DIR, "tests", "fixtures", "mail")
HAVE_PDFTOTEXT = shutil.which("pdftotext") is not None


def run(*args, **kw):
    return vault.run(*args, **kw)


def search_ids(data, query, limit=1000):
    r = run("search", "--data", data, "--json", "--limit", str(limit), query)
    if r.returncode != 0:
        raise AssertionError("search %r failed (%d): %s" % (query, r.returncode, r.stderr))
    return [json.loads(l)["id"] for l in r.stdout.splitlines() if l.strip()]


def fixture_words():
    """(file, field, word, needs) rows of words.tsv."""
    rows = []
    with open(os.path.join(FIXTURES, "words.tsv"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            rows.append((parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else ""))
    return rows


def mbox_messages(path):
    """The messages of an mboxrd file, unquoted: the exact bytes written."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    for chunk in re.split(rb"(?:^|(?<=\n))From [^\n]*\n", data)[1:]:
        if chunk.endswith(b"\n"):
            chunk = chunk[:-1]          # the newline the writer added
        chunk = re.sub(rb"(?m)^>(>*From )", rb"\1", chunk)
        out.append(chunk)
    return out


class SearchTest(unittest.TestCase):
    """One archive for the whole class: fixtures, many scripts, a generated mailbox."""

    @classmethod
    def setUpClass(cls):
        cls.d = dovecot.Dovecot().start()
        cls.d.create_folders(["Archive", "Archive/2023"])
        cls.by_file = {}
        for name in sorted(os.listdir(FIXTURES)):
            if name.endswith(".eml"):
                with open(os.path.join(FIXTURES, name), "rb") as f:
                    cls.by_file[name] = cls.d.deliver("Archive", f.read())
        box = mailgen.build_mailbox({"INBOX": 120, "Archive/2023": 40}, seed=9, duplicates=6)
        cls.d.fill(box)
        cls.scripts = {
            "zurich": "Subject: Treffen in Zürich\r\n\r\nWir sehen uns am Bahnhof.\r\n",
            "chinese": "Subject: =?UTF-8?B?5Lya6K6u?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n我们明天见面,请带上报告。\r\n",
            "apart": "Subject: apart\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n明月照人,天下太平。\r\n",
            "japanese": "Subject: kaigi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n東京で会議があります。\r\n",
            "korean": "Subject: hoeui\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n서울에서 회의가 있습니다.\r\n",
            "russian": "Subject: =?KOI8-R?B?99PU0sXewQ==?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nВСТРЕЧА завтра в Москве.\r\n",
            "greek": "Subject: synantisi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nΣΥΝΑΝΤΗΣΗ στην Αθήνα.\r\n",
        }
        cls.script_uid = {}
        for key, text in cls.scripts.items():
            raw = ("From: Script Tester <scripts@example.org>\r\nTo: bob@example.com\r\n"
                   "Date: Tue, 3 Mar 2026 09:00:00 +0000\r\nMessage-ID: <%s@example.org>\r\n" % key
                   + text).encode()
            cls.script_uid[key] = cls.d.deliver("INBOX", raw)
        cls.server = {}
        for folder in cls.d.folder_names():
            for uid, raw in cls.d.server_messages(folder):
                cls.server[(folder, uid)] = hashlib.sha256(raw).hexdigest()
        cls.raw_by_hash = {}
        for folder in cls.d.folder_names():
            for uid, raw in cls.d.server_messages(folder):
                cls.raw_by_hash[hashlib.sha256(raw).hexdigest()] = raw
        cls.e = Engine()
        cls.e.write_source("work", source_file(port=cls.d.tls_port, username=cls.d.user,
                                               password=cls.d.password,
                                               ca_file='"%s"' % cls.d.cert_path))
        cls.e.start()
        deadline = time.time() + 120
        st = {}
        while time.time() < deadline:
            st = cls.e.eval("return vault.status('work')")
            if st["status"] == "active" and st.get("index_lag") == 0:
                break
            time.sleep(0.3)
        assert st.get("status") == "active" and st.get("index_lag") == 0, (st, cls.e.log()[-3000:])

    @classmethod
    def tearDownClass(cls):
        try:
            cls.e.stop()
        finally:
            cls.e.cleanup()
            cls.d.stop()

    def hash_of(self, folder, uid):
        return self.server[(folder, uid)]

    # ---- the text of every encoding finds exactly its message ------------
    def test_each_fixture_word_finds_exactly_its_message(self):
        rows = fixture_words()
        owners, in_field = {}, {}
        for f, field, word, _ in rows:
            if field != "none":
                owners.setdefault(word, set()).add(f)
                in_field.setdefault((word, field), set()).add(f)
        checked = 0
        op = {"subject": "subject:", "from": "from:", "to": "to:", "cc": "cc:", "filenames": "filename:"}
        for f, field, word, needs in rows:
            if needs == "pdftotext" and not HAVE_PDFTOTEXT:
                continue
            if not re.fullmatch(r"\w+", word) or f not in self.by_file:
                continue            # punctuation and multi-part names are the unit test's
            want = {self.hash_of("Archive", self.by_file[g]) for g in owners.get(word, ())}
            got = set(search_ids(self.e.data, word))
            if field == "none":
                self.assertNotIn(self.hash_of("Archive", self.by_file[f]), got, (f, word))
                continue
            fixture_hashes = {self.hash_of("Archive", u) for u in self.by_file.values()}
            if word.isascii() and word.endswith("word"):
                # made-up words planted in one spot: exactly their messages, archive-wide
                self.assertEqual(got, want, (f, field, word))
            else:
                # real words (Café, 中文) may also occur in other fixtures
                self.assertLessEqual(want, got & fixture_hashes, (f, field, word))
            if field in op:
                want = {self.hash_of("Archive", self.by_file[g]) for g in in_field[(word, field)]}
                got = set(search_ids(self.e.data, op[field] + word)) & fixture_hashes
                if word.isascii() and word.endswith("word"):
                    self.assertEqual(got, want, (f, field, op[field] + word))
                else:
                    self.assertLessEqual(want, got, (f, field, op[field] + word))
            checked += 1
        self.assertGreater(checked, 30)

    def test_every_script(self):
        def one(query, key):
            want = self.hash_of("INBOX", self.script_uid[key])
            got = search_ids(self.e.data, query)
            self.assertIn(want, got, query)
            return got
        one("zurich", "zurich")                 # diacritics folded
        one("ZÜRICH", "zurich")
        got = one("明天", "chinese")             # a 2-character word
        self.assertNotIn(self.hash_of("INBOX", self.script_uid["apart"]), got)
        one("会议", "chinese")                   # in an encoded subject
        one("会議", "japanese")
        one("東京", "japanese")
        one("회의", "korean")
        one("встреча", "russian")               # case folded by Unicode
        one("subject:встреча", "russian")       # koi8-r encoded word
        one("συναντηση", "greek")               # accents and case

    # ---- operators, end to end ---------------------------------------
    def test_operators(self):
        z = self.hash_of("INBOX", self.script_uid["zurich"])
        self.assertIn(z, search_ids(self.e.data, "from:scripts@example.org zurich"))
        self.assertIn(z, search_ids(self.e.data, "to:bob@example.com folder:INBOX source:work zurich"))
        self.assertNotIn(z, search_ids(self.e.data, "zurich -bahnhof"))
        self.assertNotIn(z, search_ids(self.e.data, "folder:Archive zurich"))
        self.assertIn(z, search_ids(self.e.data, "after:2026-03-01 before:2026-03-04 bahnhof"))
        self.assertNotIn(z, search_ids(self.e.data, "before:2026-03-01 bahnhof"))
        self.assertIn(z, search_ids(self.e.data, "smaller:10k bahnhof"))
        self.assertNotIn(z, search_ids(self.e.data, "larger:10k bahnhof"))
        self.assertIn(z, search_ids(self.e.data, '"uns am bahnhof"'))
        self.assertIn(z, search_ids(self.e.data, "bahnh*"))
        both = set(search_ids(self.e.data, "bahnhof OR 明天"))
        self.assertIn(self.hash_of("INBOX", self.script_uid["chinese"]), both)
        self.assertIn(z, both)
        atts = search_ids(self.e.data, "has:attachment")
        self.assertIn(self.hash_of("Archive", self.by_file["text-attachment.eml"]), atts)
        self.assertNotIn(z, atts)
        # a query of only negations: everything else
        everything = set(search_ids(self.e.data, "-qqqqnowhere", limit=10000))
        self.assertGreaterEqual(len(everything), len(set(self.server.values())))
        self.assertEqual(set(search_ids(self.e.data, "-bahnhof", limit=10000)), everything - {z})

    def test_malformed_queries_point_at_the_column(self):
        for q, col, what in (("form:alice", 1, "from:"), ('invoice "unclosed', 9, "quote"),
                             ("after:2024-13-45", 7, "date"), ("a (b", 3, None)):
            r = run("search", "--data", self.e.data, q)
            self.assertEqual(r.returncode, 2, (q, r.stdout, r.stderr))
            self.assertIn("column %d" % col, r.stderr, (q, r.stderr))
            if what:
                self.assertIn(what, r.stderr)
            self.assertIn("\n  " + " " * (col - 1) + "^", r.stderr)
        out = self.e.eval("local h, err, col = vault.search('form:x') return {err = err, col = col}")
        self.assertEqual(out["col"], 1)

    def test_search_output_and_lua(self):
        r = run("search", "--data", self.e.data, "bahnhof")
        self.assertEqual(r.returncode, 0)
        z = self.hash_of("INBOX", self.script_uid["zurich"])
        self.assertIn(z[:12], r.stdout)
        self.assertIn("[Bahnhof]", r.stdout)         # the match marked
        hits = [json.loads(l) for l in run("search", "--data", self.e.data, "--json", "bahnhof").stdout.splitlines()]
        h = [x for x in hits if x["id"] == z][0]
        for k in ("id", "date", "from", "to", "subject", "snippet", "size", "locations"):
            self.assertIn(k, h)
        self.assertEqual(h["locations"][0]["source"], "work")
        self.assertEqual(h["locations"][0]["folder"], "INBOX")
        self.assertEqual(h["locations"][0]["uid"], self.script_uid["zurich"])
        lua = self.e.eval("return vault.search('bahnhof', {limit = 5})")
        self.assertIn(z, [x["id"] for x in lua])
        page1 = search_ids(self.e.data, "has:attachment", limit=3)
        r = run("search", "--data", self.e.data, "--json", "--limit", "3", "--offset", "3", "has:attachment")
        page2 = [json.loads(l)["id"] for l in r.stdout.splitlines()]
        self.assertFalse(set(page1) & set(page2))

    def test_status_and_stats_show_the_index(self):
        st = json.loads(run("status", "--data", self.e.data, "--json").stdout)
        self.assertEqual(st[0]["index_lag"], 0)
        self.assertIn("NOT INDEXED", run("status", "--data", self.e.data).stdout)
        stats = self.e.eval("return vault.stats()")
        self.assertGreater(stats["index"]["bytes"], 0)
        self.assertEqual(stats["index"]["lag"], 0)

    # ---- show --------------------------------------------------------
    def test_show_with_the_engine_running(self):
        z = self.hash_of("INBOX", self.script_uid["zurich"])
        raw = subprocess.run([vault.BIN, "show", "--data", self.e.data, "--raw", z[:10]],
                             capture_output=True).stdout
        self.assertEqual(raw, self.raw_by_hash[z])
        head = subprocess.run([vault.BIN, "show", "--data", self.e.data, "--headers", z],
                              capture_output=True).stdout
        self.assertTrue(head.startswith(b"From: Script Tester"))
        self.assertNotIn(b"Bahnhof", head)
        text = run("show", "--data", self.e.data, "--text", z[:8]).stdout
        self.assertIn("Wir sehen uns am Bahnhof.", text)
        summary = run("show", "--data", self.e.data, z[:8]).stdout
        self.assertIn("Subject: Treffen in Zürich", summary)
        self.assertIn("work/INBOX", summary)
        r = run("show", "--data", self.e.data, "00")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not a message id", r.stderr)
        r = run("show", "--data", self.e.data, "ffffffff")
        self.assertIn("no message", r.stderr)
        m = self.e.eval("return vault.message('%s')" % z[:12])
        self.assertEqual(m["id"], z)
        self.assertIn("Bahnhof", m["text"]["body"])

    def test_show_and_export_of_a_big_message(self):
        """Over 1 MiB, show --raw and --headers, export and vault.write_message
        write the message as it is read: the same bytes, in the same memory."""
        rnd = random.Random(12)
        raws = {}
        for word, size in (("okapistream", 8 << 20), ("okapismall", 2 << 20)):
            b64 = base64.encodebytes(rnd.randbytes(size * 3 // 4))
            big = (b"From: Big Sender <big@example.org>\r\nTo: bob@example.com\r\n"
                   b"Subject: a big one\r\nMIME-Version: 1.0\r\n"
                   b"Content-Type: multipart/mixed; boundary=bb\r\n\r\n--bb\r\n"
                   b"Content-Type: application/octet-stream\r\n"
                   b"Content-Transfer-Encoding: base64\r\n\r\n"
                   + b64.replace(b"\n", b"\r\n") +
                   b"--bb\r\nContent-Type: text/plain\r\n\r\nFrom the far end: "
                   + word.encode() + b"\r\n>From quoted\r\n--bb--\r\n")
            uid = self.d.deliver("Archive/2023", big)
            raw = dict(self.d.server_messages("Archive/2023"))[uid]
            raws[word] = (hashlib.sha256(raw).hexdigest(), raw)
        self.e.eval("return vault.sync('work')")
        deadline = time.time() + 60
        while time.time() < deadline and not all(
                h in search_ids(self.e.data, w) for w, (h, _) in raws.items()):
            time.sleep(0.3)
        h, raw = raws["okapistream"]
        self.assertIn(h, search_ids(self.e.data, "okapistream"))

        def show_held(*args):
            """The output, and the command's peak RSS (VmHWM, KiB) once it
            is blocked writing into the full pipe: by then a command that
            reads the message whole holds all of it."""
            p = subprocess.Popen([vault.BIN, "show", "--data", self.e.data] + list(args),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            peak, end = None, time.time() + 30
            while time.time() < end and p.poll() is None:
                try:
                    with open("/proc/%d/wchan" % p.pid) as f:
                        blocked = "pipe_write" in f.read()
                except OSError:
                    break
                if blocked:
                    peak = archivecheck.peak_rss_kib(p.pid)
                    break
                time.sleep(0.02)
            out, err = p.communicate()
            self.assertEqual(p.returncode, 0, err)
            return out, peak

        out8, peak8 = show_held("--raw", h[:12])
        self.assertEqual(out8, raw)
        out2, peak2 = show_held("--raw", raws["okapismall"][0])
        self.assertEqual(out2, raws["okapismall"][1])
        # read whole, 6 MiB more of message would be held, at least once
        self.assertIsNotNone(peak8)
        self.assertIsNotNone(peak2)
        self.assertLess(peak8 - peak2, 2 * 1024, (peak8, peak2))
        head, _ = show_held("--headers", h)
        self.assertEqual(head, raw[:raw.index(b"\r\n\r\n") + 2])
        self.assertIn("okapistream", run("show", "--data", self.e.data, "--text", h).stdout)

        out = os.path.join(self.e.tmp, "big.mbox")
        r = run("export", "--data", self.e.data, "--format", "mbox", "--out", out, "okapistream")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(mbox_messages(out), [raw])
        path = os.path.join(self.e.tmp, "big.eml")
        n = self.e.eval("local f = assert(io.open(%r, 'wb')) local n, err = vault.write_message(%r, f) "
                        "f:close() return n or err" % (path, h))
        self.assertEqual(n, len(raw))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), raw)
        r = run("show", "--data", self.e.data, "--raw", "ffffffffff")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no message", r.stderr)

        # damaged where it is stored (and put right afterwards): neither
        # the message nor its header block is given as if whole
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.e.data, "archive.db"), uri=True)
        seg, off, length = db.execute("SELECT pack_segment, pack_offset, pack_length FROM messages "
                                      "WHERE hash = ?", (h,)).fetchone()
        db.close()
        where = off + 56 + length // 2          # PACK_RECORD_HEADER, then the stored bytes
        with open(os.path.join(self.e.data, "packs", "%08d.seg" % seg), "r+b") as f:
            def flip():
                f.seek(where)
                b = f.read(1)
                f.seek(where)
                f.write(bytes([b[0] ^ 0x55]))
                f.flush()
            flip()
            try:
                for part in ("--raw", "--headers"):
                    r = subprocess.run([vault.BIN, "show", "--data", self.e.data, part, h],
                                       capture_output=True)
                    self.assertEqual(r.returncode, 1, (part, r.stderr))
                    self.assertIn(b"run emailvault verify", r.stderr, part)
            finally:
                flip()
        # its segment gone (and put back): recorded, but unreadable, which
        # is not "no message with that id"
        seg_path = os.path.join(self.e.data, "packs", "%08d.seg" % seg)
        os.rename(seg_path, seg_path + ".away")
        try:
            r = subprocess.run([vault.BIN, "show", "--data", self.e.data, "--raw", h],
                               capture_output=True)
        finally:
            os.rename(seg_path + ".away", seg_path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"is recorded but its bytes cannot be read: No such file or directory",
                      r.stderr)
        self.assertNotIn(b"no message", r.stderr)
        head, _ = show_held("--headers", h)
        self.assertEqual(head, raw[:raw.index(b"\r\n\r\n") + 2])

    # ---- export --------------------------------------------------------
    def test_export_mbox_round_trip(self):
        out = os.path.join(self.e.tmp, "all.mbox")
        r = run("export", "--data", self.e.data, "--format", "mbox", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        msgs = mbox_messages(out)
        want = set(self.server.values())
        self.assertEqual(len(msgs), len(want))          # each once
        self.assertEqual({hashlib.sha256(m).hexdigest() for m in msgs}, want)
        self.assertEqual(os.stat(out).st_mode & 0o777, 0o600)
        r = run("export", "--data", self.e.data, "--format", "mbox", "--out", out)
        self.assertNotEqual(r.returncode, 0)             # never overwritten
        self.assertIn("exists", r.stderr)

    def test_mboxrd_quoting_of_from_lines(self):
        tricky = (b"From: a@example.com\r\nSubject: quoting\r\n\r\nFrom here on\r\n>From quoted\r\n"
                  b">>From twice\r\nFrom")
        uid = self.d.deliver("Archive/2023", tricky)
        raw = dict(self.d.server_messages("Archive/2023"))[uid]
        h = hashlib.sha256(raw).hexdigest()
        self.e.eval("return vault.sync('work')")
        deadline = time.time() + 60
        while time.time() < deadline and h not in search_ids(self.e.data, "quoting"):
            time.sleep(0.3)
        out = os.path.join(self.e.tmp, "q.mbox")
        r = run("export", "--data", self.e.data, "--format", "mbox", "--out", out, "subject:quoting")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out, "rb") as f:
            data = f.read()
        self.assertIn(b"\n>From here on", data)
        self.assertIn(b"\n>>From quoted", data)
        self.assertEqual(mbox_messages(out), [raw])

    def test_export_eml_by_folder_and_date_order(self):
        out = os.path.join(self.e.tmp, "eml")
        r = run("export", "--data", self.e.data, "--format", "eml", "--by-folder", "--out", out,
                "folder:Archive/2023")
        self.assertEqual(r.returncode, 0, r.stderr)
        folder = os.path.join(out, "work", "Archive", "2023")
        names = sorted(os.listdir(folder))
        self.assertTrue(names)
        for n in names:
            with open(os.path.join(folder, n), "rb") as f:
                self.assertIn(hashlib.sha256(f.read()).hexdigest(), self.raw_by_hash)
        self.assertEqual(os.stat(folder).st_mode & 0o777, 0o700)

    def test_export_maildir_reimports_into_dovecot_identically(self):
        out = os.path.join(self.e.tmp, "md")
        r = run("export", "--data", self.e.data, "--format", "maildir", "--out", out, "folder:INBOX")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"exported (\d+) messages", r.stdout)
        want = {h for (f, _), h in self.server.items() if f == "INBOX"}
        self.assertEqual(int(m.group(1)), len(want))
        other = dovecot.Dovecot().start()
        try:
            other.create_folder("Restored")
            path = other.folder_path("Restored")
            for n in os.listdir(os.path.join(out, "cur")):
                shutil.copy(os.path.join(out, "cur", n), os.path.join(path, "cur", n))
                os.chown(os.path.join(path, "cur", n), os.stat(path).st_uid, os.stat(path).st_gid)
            other.doveadm("force-resync", "-u", other.user, "Restored")
            got = {hashlib.sha256(raw).hexdigest() for _, raw in other.server_messages("Restored")}
            self.assertEqual(got, want)
        finally:
            other.stop()

    def test_export_query_errors_and_empty(self):
        r = run("export", "--data", self.e.data, "--format", "mbox", "--out",
                os.path.join(self.e.tmp, "x.mbox"), "form:bob")
        self.assertEqual(r.returncode, 2)
        self.assertIn("column 1", r.stderr)
        r = run("export", "--data", self.e.data, "--format", "zip", "--out", "/tmp/x")
        self.assertEqual(r.returncode, 2)
        empty = os.path.join(self.e.tmp, "none.mbox")
        r = run("export", "--data", self.e.data, "--format", "mbox", "--out", empty, "nosuchwordanywhere")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("exported 0 messages", r.stdout)


class ReindexVerifyTest(unittest.TestCase):
    def test_reindex_offline_and_online_and_repair(self):
        d = dovecot.Dovecot().start()
        e = Engine()
        try:
            d.fill({"INBOX": 60})
            e.write_source("s", source_file(port=d.tls_port, username=d.user, password=d.password,
                                            ca_file='"%s"' % d.cert_path))
            e.start(once=True)
            self.assertEqual(e.wait(120), 0)
            # --once may end before the index caught up: reindex offline fills it
            r = run("reindex", "--data", e.data)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("reindexed 60 messages", r.stdout)
            n = len(search_ids(e.data, "-zzzznothing", limit=1000))     # a query of a negation
            self.assertEqual(n, 60)
            db = sqlite3.connect(os.path.join(e.data, "archive.db"))
            # (fts needs the engine's tokenizer; its docsize table has a row per document)
            self.assertEqual(db.execute("SELECT count(*) FROM fts_docsize").fetchone()[0], 60)
            # an index row whose blob is gone, and one without a message
            db.close()
            archivecheck.cut_message(e.data, archivecheck.last_stored(e.data))   # its bytes gone
            r = run("verify", "--data", e.data)
            self.assertEqual(r.returncode, 1)
            self.assertIn("1 without a message or blob", r.stdout)
            r = run("verify", "--data", e.data, "--repair-index")
            self.assertIn("1 repaired", r.stdout, r.stdout + r.stderr)
            db = sqlite3.connect(os.path.join(e.data, "archive.db"))
            self.assertEqual(db.execute("SELECT count(*) FROM fts_docsize").fetchone()[0], 59)
            # a row whose text is gone: FTS5 cannot take it out of the index
            # alone, so the index is made again from the others' text, and
            # the message is indexed again
            lost = db.execute("SELECT min(id) FROM fts_text").fetchone()[0]
            db.execute("DELETE FROM fts_text WHERE id = ?", (lost,))
            db.commit()
            db.close()
            r = run("verify", "--data", e.data)
            self.assertEqual(r.returncode, 1)
            self.assertIn("row %d has lost its text" % lost, r.stdout)
            r = run("verify", "--data", e.data, "--repair-index")
            self.assertIn("made again from the text of its rows", r.stdout, r.stdout + r.stderr)
            self.assertIn("1 repaired", r.stdout)
            db = sqlite3.connect(os.path.join(e.data, "archive.db"))
            self.assertEqual(db.execute("SELECT count(*) FROM fts_docsize").fetchone()[0], 58)
            self.assertEqual(db.execute("SELECT indexed FROM messages WHERE rowid = ?",
                                        (lost,)).fetchone()[0], 0)
            db.close()
            r = run("verify", "--data", e.data)
            self.assertNotIn("lost its text", r.stdout)
            # online: through the engine, which keeps running
            e.start()
            r = run("reindex", "--data", e.data)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("by the running engine", r.stdout)
            r = run("verify", "--data", e.data, "--repair-index")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("running", r.stderr)
        finally:
            e.cleanup()
            d.stop()

    def test_reindex_of_a_big_index_keeps_its_memory(self):
        # Dropping the old index zeroed every page of it through a statement
        # journal in memory (Debian's SQLite deletes securely): 100 MB for
        # the index of 20,000 of these messages when FTS5 kept its own copy
        # of the text, 271 MB for 20,000 small IMAP messages. And it
        # closed its writer before its readers, leaving a WAL the index's size.
        gen = os.path.join(os.path.dirname(vault.BIN), "gen_archive")
        if not os.path.exists(gen):
            self.skipTest("gen_archive is not built beside the engine")
        data = tempfile.mkdtemp(prefix="ev-reindex-")
        try:
            g = subprocess.run([gen, os.path.join(data, "d"), "40000"], capture_output=True,
                               text=True, timeout=600)
            self.assertEqual(g.returncode, 0, g.stderr)
            db = os.path.join(data, "d", "archive.db")
            conn = sqlite3.connect(db)
            index_pages = conn.execute(
                "SELECT count(*) FROM dbstat WHERE name LIKE 'fts_%'").fetchone()[0]
            conn.close()
            self.assertGreater(index_pages * 4096, 30 << 20)   # the drop has much to free
            with open(os.path.join(data, "out"), "w+") as out:
                p = subprocess.Popen([vault.BIN, "reindex", "--data", os.path.join(data, "d")],
                                     stdout=out, stderr=subprocess.STDOUT)
                _, status, ru = os.wait4(p.pid, 0)    # its own peak, not gen_archive's
                out.seek(0)
                text = out.read()
            self.assertEqual(os.waitstatus_to_exitcode(status), 0, text)
            self.assertIn("reindexed 40000 messages", text)
            # and closed last what can checkpoint: no WAL left of the index's size
            self.assertFalse(os.path.exists(db + "-wal"))
            peak_kib = ru.ru_maxrss
            asan = "libasan" in subprocess.run(["ldd", vault.BIN], capture_output=True,
                                               text=True).stdout
            print("reindex: peak RSS %d KiB over an index of %d MB%s" % (
                peak_kib, index_pages * 4096 >> 20, " (ASan)" if asan else ""))
            # 37 MiB here with the drop's secure_delete = FAST, 61 MiB without
            # (the index's pages in the statement journal); the engine's own
            # ceiling is 64 MiB
            if not asan:    # its redzones and quarantine say nothing of ours
                self.assertLess(peak_kib, 48 << 10)
        finally:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
