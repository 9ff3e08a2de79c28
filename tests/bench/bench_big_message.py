#!/usr/bin/env python3
"""Does a big message cost memory? A private Dovecot with two users: one
with 100 generated messages, the other with the same and one message of
--mib MiB (a text part, a base64 attachment of random bytes, then another
text part). The engine archives each account into an empty archive, with
the indexer on and off (EMAILVAULT_INDEXER=off), until the import is done
and, with the indexer on, the index has caught up; then `search` must find
the words of both text parts of the big message. Prints the engine's peak
RSS (VmHWM) in each case and what the big message added. Medians of
--rounds, run in rotation. Not a test: run it by hand, e.g.

    python3 tests/bench/bench_big_message.py --mib 200 --rounds 3
"""
import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
import archivecheck  # noqa: E402
import dovecot  # noqa: E402
import mailgen  # noqa: E402
import vault    # noqa: E402
from bench_index import status  # noqa: E402

BEFORE = "quetzalfirstpart"
AFTER = "axolotllastpart"


def big_message(mib):
    """A multipart message with MIB MiB of base64 in the middle."""
    raw = os.urandom(mib * 1024 * 1024)
    b64 = base64.encodebytes(raw)       # 76-character lines, LF
    head = ("From: Big Sender <big@example.test>\r\nTo: alice@example.test\r\n"
            "Subject: a big one\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
            "Message-ID: <big-1@example.test>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b-1"\r\n\r\n'
            "--b-1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            "The first part says %s.\r\n"
            "--b-1\r\nContent-Type: application/octet-stream; name=blob.bin\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" % BEFORE).encode()
    tail = ("\r\n--b-1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            "The last part says %s.\r\n--b-1--\r\n" % AFTER).encode()
    return head + b64.replace(b"\n", b"\r\n") + tail


def found(bin_, data, word):
    r = subprocess.run([bin_, "search", "--data", data, "--json", word],
                       capture_output=True, text=True)
    try:
        return len([json.loads(line) for line in r.stdout.splitlines() if line.strip()])
    except ValueError:
        return -1


def archive(bin_, d, user, indexer):
    """Peak RSS (MiB) of the engine archiving USER's account; the data folder."""
    tmp = tempfile.mkdtemp(prefix="ev-bench-")
    sources = os.path.join(tmp, "sources.d")
    data = os.path.join(tmp, "data")
    os.makedirs(sources)
    with open(os.path.join(sources, "bench.lua"), "w") as f:
        f.write(vault.source_file(port=d.tls_port, username=user, password=d.users[user],
                                  ca_file='"%s"' % d.cert_path))
    env = dict(os.environ)
    if not indexer:
        env["EMAILVAULT_INDEXER"] = "off"
    proc = subprocess.Popen([bin_, "run", "--sources", sources, "--data", data,
                             "--log", os.path.join(tmp, "engine.log")], env=env)
    hwm_kb, t0, next_poll = 0, time.time(), 0
    while time.time() - t0 < 1800:
        kib = archivecheck.peak_rss_kib(proc.pid)
        if kib is None:
            break
        hwm_kb = max(hwm_kb, kib)
        if time.time() >= next_poll:
            st = status(bin_, data)
            if st.get("status") == "active" and (not indexer or st.get("index_lag") == 0):
                break
            next_poll = time.time() + 0.5
        time.sleep(0.02)
    proc.terminate()
    proc.wait()
    return hwm_kb / 1024, tmp, data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", default=vault.BIN)
    args = ap.parse_args()
    with dovecot.Dovecot(users=[("small", "pw-small"), ("big", "pw-big")]) as d:
        small = mailgen.build_mailbox({"INBOX": 100}, seed=1, duplicates=0)["INBOX"]
        d.fill({"INBOX": small}, user="small")
        d.fill({"INBOX": small + [big_message(args.mib)]}, user="big")
        print("server: 100 messages; the same and one of %d MiB" % args.mib)
        rss = {}
        for r in range(args.rounds):
            for indexer in (True, False):
                for user in ("small", "big"):
                    mib, tmp, data = archive(args.bin, d, user, indexer)
                    rss.setdefault((indexer, user), []).append(mib)
                    note = ""
                    if user == "big" and indexer:
                        hits = (found(args.bin, data, BEFORE), found(args.bin, data, AFTER))
                        note = " (search finds the parts before/after it: %d/%d)" % hits
                        if hits != (1, 1):
                            print("the big message's text is not all indexed; data in %s" % tmp)
                            sys.exit(1)
                    shutil.rmtree(tmp)
                    print("round %d, indexer %s, %s: peak RSS %.1f MiB%s" % (
                        r + 1, "on" if indexer else "off", user, mib, note))
        m = statistics.median
        for indexer in (True, False):
            a, b = m(rss[(indexer, "small")]), m(rss[(indexer, "big")])
            print("indexer %s: peak RSS %.1f MiB without the big message, %.1f MiB with it "
                  "(+%.1f MiB)" % ("on" if indexer else "off", a, b, b - a))


if __name__ == "__main__":
    main()
