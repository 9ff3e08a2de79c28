"""FETCH batches bounded by bytes as well as by count (fetch_batch_bytes)
against a real Dovecot: a folder of large messages is asked for in more
commands, a message over the budget goes alone, and everything is archived
once."""
import os
import re
import tempfile
import unittest

import archivecheck
import dovecot
import vault
from vault import Engine, source_file

KIB = 1024


def big_message(i, size):
    head = ("From: a%d@example.org\r\nTo: alice@example.org\r\nSubject: big %d\r\n"
            "Message-ID: <big-%d@example.org>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n" % (i, i, i))
    line = ("%d " % i * 40)[:76] + "\r\n"
    body = line * (max(0, size - len(head)) // len(line) + 1)
    return (head + body).encode()


def batches(engine, folder):
    """[(messages, bytes)] of the FETCH batches the engine sent for FOLDER."""
    out = []
    for line in engine.log_lines(r'fetch batch folder="%s"' % re.escape(folder)):
        m = re.search(r"messages=(\d+) bytes=(\d+)", line)
        out.append((int(m.group(1)), int(m.group(2))))
    return out


class FetchBatchBytesTest(unittest.TestCase):
    def setUp(self):
        self.d = dovecot.Dovecot().start()
        self.e = Engine()

    def tearDown(self):
        self.e.cleanup()
        self.d.stop()

    def test_large_messages_split_into_more_commands(self):
        budget = 256 * KIB
        # 12 of 100 KiB (two per batch), one of 600 KiB (over the budget:
        # alone), and small ones that share batches up to fetch_batch.
        big = [big_message(i, 100 * KIB) for i in range(12)]
        huge = big_message(99, 600 * KIB)
        small = [big_message(200 + i, 2 * KIB) for i in range(30)]
        self.d.fill({"Big": big[:6] + [huge] + big[6:], "Small": small})
        want = archivecheck.server_state(self.d, ["Big", "Small"])
        self.e.write_source("mail", source_file(
            port=self.d.tls_port, username=self.d.user, password=self.d.password,
            ca_file='"%s"' % self.d.cert_path, fetch_batch=20, fetch_batch_bytes=budget,
            folders='{ include = { "Big", "Small" } }'))
        self.e.start(once=True)
        self.assertEqual(self.e.wait(timeout=120), 0, self.e.log()[-3000:])
        archivecheck.check_complete(self, self.e.data, want, source="mail")

        got = batches(self.e, "Big")
        print("Big:", got, "Small:", batches(self.e, "Small"))
        self.assertEqual(sum(n for n, _ in got), 13)
        # Without the byte budget this folder is one command of 13.
        self.assertGreaterEqual(len(got), 7, got)
        for n, b in got:
            self.assertTrue(b <= budget or n == 1, (n, b))
        self.assertIn(1, [n for n, b in got if b > budget])
        # Small messages: only the count bounds them (30 in batches of 20).
        self.assertEqual([n for n, _ in batches(self.e, "Small")], [20, 10])


class FetchBatchBytesFieldTest(unittest.TestCase):
    def test_validated(self):
        d = tempfile.mkdtemp(prefix="ev-fbb-")
        for value, ok in (("65536", True), ("16 * 1024 * 1024", True), ("1 << 30", True),
                          ("1000", False), ("(1 << 30) + 1", False), ("100000.5", False)):
            with open(os.path.join(d, "s.lua"), "w") as f:
                f.write(source_file(fetch_batch_bytes=value))
            r = vault.run("check", "--sources", d)
            self.assertEqual(r.returncode == 0, ok, (value, r.stdout, r.stderr))
            if not ok:
                self.assertIn("fetch_batch_bytes", r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
