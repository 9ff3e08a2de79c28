#!/usr/bin/env python3
"""Indexing benchmark: does the indexer slow the import down, and how fast
does it index? A private Dovecot is filled with generated mail; then, in
rotation, the engine imports it into an empty archive with the indexer off
(EMAILVAULT_INDEXER=off) and on (the time the import took, and when the index
caught up), and `emailvault reindex` rebuilds the index of the last archive
(messages/s and MB/s of indexing alone). Medians over the rounds. Not a
test: run it by hand, e.g.

    python3 tests/bench/bench_index.py --messages 5000 --rounds 3
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
import dovecot  # noqa: E402
import mailgen  # noqa: E402
import vault    # noqa: E402


def status(bin_, data):
    r = subprocess.run([bin_, "status", "--data", data, "--json"], capture_output=True, text=True)
    try:
        return json.loads(r.stdout)[0]
    except (ValueError, IndexError):
        return {}


def import_once(bin_, d, total, indexer):
    tmp = tempfile.mkdtemp(prefix="ev-bench-")
    sources = os.path.join(tmp, "sources.d")
    data = os.path.join(tmp, "data")
    os.makedirs(sources)
    with open(os.path.join(sources, "bench.lua"), "w") as f:
        f.write(vault.source_file(port=d.tls_port, username=d.user, password=d.password,
                                  ca_file='"%s"' % d.cert_path))
    env = dict(os.environ)
    if not indexer:
        env["EMAILVAULT_INDEXER"] = "off"
    t0 = time.time()
    proc = subprocess.Popen([bin_, "run", "--sources", sources, "--data", data,
                             "--log", os.path.join(tmp, "engine.log")], env=env)
    imported = caught_up = None
    while time.time() - t0 < 3600:
        st = status(bin_, data)
        now = time.time() - t0
        if imported is None and st.get("status") == "active":
            imported = now
        if imported is not None and (not indexer or st.get("index_lag") == 0):
            caught_up = now
            break
        time.sleep(0.1)
    proc.terminate()
    proc.wait()
    return tmp, data, imported, caught_up


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", default=vault.BIN)
    args = ap.parse_args()

    with dovecot.Dovecot() as d:
        d.create_folders(["Archive"])
        box = mailgen.build_mailbox({"INBOX": args.messages // 2,
                                     "Archive": args.messages - args.messages // 2},
                                    seed=1, duplicates=0)
        d.fill(box)
        mb = sum(len(m) for msgs in box.values() for m in msgs) / 1e6
        del box
        print("server: %d messages, %.1f MB" % (args.messages, mb))
        off, on, lag, rebuild = [], [], [], []
        for r in range(args.rounds):
            tmp, _, t_off, _ = import_once(args.bin, d, args.messages, False)
            shutil.rmtree(tmp)
            tmp, data, t_on, t_idx = import_once(args.bin, d, args.messages, True)
            off.append(t_off)
            on.append(t_on)
            lag.append(t_idx - t_on)
            t0 = time.time()
            subprocess.run([args.bin, "reindex", "--data", data], check=True, capture_output=True)
            rebuild.append(time.time() - t0)
            shutil.rmtree(tmp)
            print("round %d: import %.2f s without the indexer, %.2f s with it (index caught up "
                  "%.2f s later); reindex %.2f s" % (r + 1, t_off, t_on, t_idx - t_on, rebuild[-1]))
        m = statistics.median
        print("median import: %.0f msg/s without the indexer, %.0f msg/s with it (%.2fx)" % (
            args.messages / m(off), args.messages / m(on), m(off) / m(on)))
        print("median index caught up %.2f s after the import's end" % m(lag))
        print("median indexing alone (reindex): %.0f msg/s, %.1f MB/s" % (
            args.messages / m(rebuild), mb / m(rebuild)))


if __name__ == "__main__":
    main()
