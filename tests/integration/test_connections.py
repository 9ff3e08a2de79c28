"""connections = N against a real Dovecot: a source reads several folders at
once over several logged-in connections, and every message is archived
exactly once; the field is validated."""
import datetime
import os
import re
import tempfile
import time
import unittest

import archivecheck
import dovecot
import mailgen
import vault
from vault import Engine, source_file

FOLDERS = {"INBOX": 160, "Archive": 160, "Lists/dev": 160, "Sent": 160, "Notes": 160}


def log_time(line):
    return datetime.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def folder_spans(engine):
    """{folder: (first FETCH batch sent, folder archived, connection)}."""
    starts, spans = {}, {}
    for line in engine.log_lines(r"\[mail\] (fetch batch|folder archived)"):
        m = re.search(r'folder=("([^"]*)"|(\S+))', line)
        name = m.group(2) if m.group(2) is not None else m.group(3)
        if "fetch batch" in line:
            starts.setdefault(name, log_time(line))
        else:
            c = re.search(r"connection=(\d+)", line)
            spans[name] = (starts.get(name), log_time(line), int(c.group(1)) if c else None)
    return spans


class ConnectionsTest(unittest.TestCase):
    def setUp(self):
        self.d = dovecot.Dovecot().start()
        self.e = Engine()

    def tearDown(self):
        try:
            self.assertEqual(self.d.seen_count(), 0, "a message got \\Seen")
        finally:
            self.e.cleanup()
            self.d.stop()

    def src(self, **kw):
        args = dict(port=self.d.tls_port, username=self.d.user, password=self.d.password,
                    ca_file='"%s"' % self.d.cert_path, fetch_batch=10, pipeline=2)
        args.update(kw)
        return source_file(**args)

    def test_two_connections_archive_every_folder_once(self):
        box = mailgen.build_mailbox(FOLDERS, seed=12, duplicates=10)
        self.d.create_folders([f for f in FOLDERS if f != "INBOX"])
        self.d.fill(box)
        want = archivecheck.server_state(self.d)
        self.e.write_source("mail", self.src(connections=2))
        time.sleep(0.3)
        mark = os.path.getsize(self.d.log_path)     # the harness's own logins before it
        self.e.start(once=True)
        self.assertEqual(self.e.wait(timeout=180), 0, self.e.log()[-3000:])
        archivecheck.check_complete(self, self.e.data, want, source="mail")

        # Two logins, each session fetched bodies, and no body twice.
        time.sleep(0.5)     # Dovecot writes "Logged out" as the sessions end
        with open(self.d.log_path, "rb") as f:
            f.seek(mark)
            dlog = f.read().decode("utf-8", "replace")
        logins = re.findall(r"imap-login: Info: Login: user=<%s>" % self.d.user, dlog)
        self.assertEqual(len(logins), 2, dlog[-3000:])
        bodies = [int(n) for n in re.findall(r"Logged out .*body_count=(\d+)", dlog)]
        self.assertEqual(len(bodies), 2, dlog[-3000:])
        self.assertTrue(all(n > 0 for n in bodies), bodies)
        self.assertEqual(sum(bodies), len(want), bodies)

        # Every folder was archived by one of the two connections, both did
        # some, and one connection's folder was read while the other's was.
        spans = folder_spans(self.e)
        self.assertEqual(set(spans), set(FOLDERS), spans)
        self.assertEqual({c for (_, _, c) in spans.values()}, {1, 2}, spans)
        overlap = any(a[2] != b[2] and a[0] < b[1] and b[0] < a[1]
                      for a in spans.values() for b in spans.values())
        self.assertTrue(overlap, "no two folders were read at the same time: %r" % spans)
        st = archivecheck.db_rows(self.e.data, "SELECT status, import_done FROM sources WHERE id = 'mail'")
        self.assertEqual(st, [("active", 1)])

    def test_failure_of_the_second_connection_goes_through_the_retry_policy(self):
        # A server that allows one connection per user (as providers cap
        # them): the second one is refused, the source is in error with the
        # retry policy's next try, and the folder the first connection took
        # is archived.
        self.d.stop()
        self.d = dovecot.Dovecot(extra_conf="protocol imap {\n  mail_max_userip_connections = 1\n}\n").start()
        self.d.fill({"INBOX": 30, "Archive": 30})
        self.e.write_source("mail", self.src(connections=2, on_error="function() return 60 end"))
        self.e.start()
        self.e.wait_for_log(r"\[mail\] source failed", timeout=60)
        st = self.e.eval("return vault.status('mail')")
        print("error:", st["error"]["kind"], st["error"]["message"])
        self.assertEqual(st["status"], "error")
        self.assertIn("connection 2 of 2", st["error"]["message"])
        self.assertIn("lower `connections`", st["error"]["message"])
        self.assertIsNotNone(st["error"].get("next_retry"))
        self.e.wait_for_log(r"\[mail\] folder archived", timeout=30)
        n = archivecheck.db_rows(self.e.data, "SELECT count(*) FROM locations")[0][0]
        self.assertIn(n, (30, 60))      # the folder the first connection took
        self.e.stop()


class ConnectionsFieldTest(unittest.TestCase):
    def test_validated(self):
        d = tempfile.mkdtemp(prefix="ev-conn-")
        for value, ok in (("1", True), ("16", True), ("0", False), ("17", False), ("2.5", False),
                          ('"2"', False)):
            with open(os.path.join(d, "s.lua"), "w") as f:
                f.write(source_file(connections=value))
            r = vault.run("check", "--sources", d)
            self.assertEqual(r.returncode == 0, ok, (value, r.stdout, r.stderr))
            if not ok:
                self.assertIn("connections", r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
