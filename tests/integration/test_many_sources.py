"""50 sources against one Dovecot (50 users) importing at once on the one
event loop: every source completes exactly, none is starved, and the
control socket keeps answering quickly meanwhile (nothing long runs on the
loop: no syncfs, no long transaction)."""
import calendar
import hashlib
import os
import re
import statistics
import time
import unittest

import archivecheck
import control
import dovecot
import mailgen
import vault
from vault import Engine, source_file

SOURCES = int(os.environ.get("EMAILVAULT_MANY_SOURCES", "50"))
PER_FOLDER = 120
FOLDERS = ("INBOX", "Work")
# The loop's answers, in seconds. The median tells a loop that waits on the
# disk per batch (103 ms before the flushes moved to a thread) from one that
# does not (7-20 ms, also on a loaded machine); a single answer is left a
# wide margin, as on 2 shared cores one slow answer is the scheduler's as
# often as the engine's (benchmarks measure: tests/bench/bench_many_sources.py).
MEDIAN_FAIL = 0.060
WORST_FAIL = 1.5


def user(i):
    return "u%02d" % i, "pw-%02d-secret" % i


class ManySourcesTest(unittest.TestCase):
    def setUp(self):
        # The server at a lower priority: it would be on another machine, and
        # here its 50 processes would otherwise take the 2 cores from the one
        # engine whose latency is measured.
        self.d = dovecot.Dovecot(users=[user(i) for i in range(SOURCES)], nice=10).start()
        self.e = Engine(log_level="info")

    def tearDown(self):
        self.e.cleanup()
        self.d.stop()

    def test_fifty_sources_at_once(self):
        for i in range(SOURCES):
            u, _ = user(i)
            gen = mailgen.MailGen(seed=100 + i, max_size=20000)
            self.d.fill({f: gen.messages(PER_FOLDER) for f in FOLDERS}, user=u)
        for i in range(SOURCES):
            u, pw = user(i)
            self.e.write_source(u, source_file(port=self.d.tls_port, username=u, password=pw,
                                               ca_file='"%s"' % self.d.cert_path, poll=600,
                                               fetch_batch=20))
        t0 = time.time()
        self.e.start()
        probe = control.LatencyProbe(self.e.data).start()
        deadline = time.time() + 600
        try:
            while True:
                try:
                    rows = archivecheck.db_rows(self.e.data, "SELECT count(*) FROM sources "
                                                "WHERE import_done = 1")
                except Exception:
                    rows = [(0,)]
                if rows[0][0] == SOURCES:
                    break
                self.assertIsNone(self.e.proc.poll(), self.e.log()[-3000:])
                self.assertLess(time.time(), deadline, "the import did not finish\n" + self.e.log()[-3000:])
                time.sleep(0.5)
        finally:
            probe.stop()
        elapsed = time.time() - t0

        # The control socket: worst answer while 50 sources imported.
        worst = probe.worst()
        print("control socket: %d answers, median %.1f ms, p99 %.1f ms, worst %.1f ms" % (
            len(probe.samples), 1000 * statistics.median(probe.samples),
            1000 * probe.percentile(99), 1000 * worst))
        print("slowest answers (s after start, ms):", ", ".join(
            "%.1f: %.0f" % (at - t0, 1000 * sec) for at, sec in probe.slowest()))
        self.assertEqual(probe.errors, [])
        self.assertGreater(len(probe.samples), 10)
        # Under AddressSanitizer every instruction of the loop costs 2-3
        # times as much: the bound says nothing about the engine then.
        slow = 3 if archivecheck.sanitized(self.e.proc.pid) else 1
        self.assertLess(statistics.median(probe.samples), MEDIAN_FAIL * slow,
                        "the loop waits for something on every batch")
        self.assertLess(worst, WORST_FAIL * slow, "the loop was blocked")

        # Every source complete, each message once.
        total = 0
        for i in range(SOURCES):
            u, _ = user(i)
            want = {(f, uid): hashlib.sha256(raw).hexdigest()
                    for f in FOLDERS for uid, raw in self.d.server_messages(f, user=u)}
            got, nrows = archivecheck.archived(self.e.data, u)
            self.assertEqual(got, want, u)
            self.assertEqual(nrows, len(want), u)
            total += len(want)
        r = vault.run("verify", "--data", self.e.data, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        # Nobody starved. When a source logs in is the server's doing (50
        # logins at once to a niced Dovecot); from then on the engine's loop
        # serves it: no source may wait longer for its first batch (20
        # messages) than half the sources need for their whole import.
        logins = {}
        for line in self.e.log_lines(r"\] connected server="):
            m = re.match(r"(\S+)Z \S+\s+\[(u\d+)\]", line)
            when = calendar.timegm(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + \
                float("0" + m.group(1)[19:])
            logins.setdefault(m.group(2), when)
        spans = archivecheck.db_rows(self.e.data, "SELECT source, min(archived_at), max(archived_at) "
                                     "FROM locations GROUP BY source")
        self.assertEqual(len(spans), SOURCES)
        self.assertEqual(set(logins), {s for s, _, _ in spans})
        waits = {s: first - logins[s] for s, first, _ in spans}
        whole = statistics.median(last - logins[s] for s, _, last in spans)
        slowest = max(waits, key=waits.get)
        print("%d sources, %d messages in %.1f s (%.0f msg/s); logins over %.1f s; first batch "
              "after login: median %.2f s, worst %.2f s (%s); a whole import after login: "
              "median %.2f s" % (
                  SOURCES, total, elapsed, total / elapsed, max(logins.values()) - min(logins.values()),
                  statistics.median(waits.values()), waits[slowest], slowest, whole))
        self.assertLess(waits[slowest], whole, "%s waited for its first batch" % slowest)
        self.e.stop()


if __name__ == "__main__":
    unittest.main()
