#!/usr/bin/env python3
"""Many sources at once against one source alone: a private Dovecot with
N users of M messages each, `emailvault run --once` with one source per
user; then one user holding all N*M messages, archived by one source. Same
messages, same machine, same run. Prints messages/s and MB/s of both, the
ratio, and the control socket's worst answer while the N sources imported.

The server has a cost of its own per user (a TLS handshake, a login, an
imap process, each folder's index), so it also times the project's discard
client (tests/bench/discard_client.c: fetch everything, keep nothing) the
same two ways: N at once, one per user, and one for the user holding all.
Their ratio is what the server allows; the engine's is measured against it.
Rounds run in rotation; medians are reported. Not a test: run it by hand, e.g.

    python3 tests/bench/bench_many_sources.py --sources 50 --messages 200
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
import control  # noqa: E402
import dovecot  # noqa: E402
import mailgen  # noqa: E402
import vault    # noqa: E402

FOLDERS = ("INBOX", "Work")


def run_engine(binary, d, users, probe):
    """Archives USERS ([(user, password)]) with one source each; returns
    (seconds, user CPU s, system CPU s, latency probe or None)."""
    tmp = tempfile.mkdtemp(prefix="ev-bench-many-")
    sources, data = os.path.join(tmp, "sources.d"), os.path.join(tmp, "data")
    os.makedirs(sources)
    for u, pw in users:
        with open(os.path.join(sources, u + ".lua"), "w") as f:
            f.write(vault.source_file(port=d.tls_port, username=u, password=pw,
                                      ca_file='"%s"' % d.cert_path))
    cmd = [binary, "run", "--once", "--sources", sources, "--data", data,
           "--log", os.path.join(tmp, "engine.log")]
    t0 = time.time()
    proc = subprocess.Popen(cmd)
    lp = None
    if probe:
        sock = os.path.join(data, "control.sock")
        while not os.path.exists(sock) and proc.poll() is None:
            time.sleep(0.01)
        lp = control.LatencyProbe(data).start()
    _, status, ru = os.wait4(proc.pid, 0)
    elapsed = time.time() - t0
    if lp:
        lp.stop()
    if os.waitstatus_to_exitcode(status) != 0:
        print("engine failed; log in", tmp)
        sys.exit(1)
    shutil.rmtree(tmp, ignore_errors=True)
    return elapsed, ru.ru_utime, ru.ru_stime, lp


def run_discard(discard, d, users):
    """Fetches every message of USERS at once, one discard client each;
    returns (seconds, messages)."""
    t0 = time.time()
    procs = [subprocess.Popen([discard, "127.0.0.1", str(d.tls_port), u, d.cert_path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
             for u, _ in users]
    for p, (_, pw) in zip(procs, users):
        p.stdin.write((pw + "\n").encode())
        p.stdin.close()
    n = 0
    for p in procs:
        out = p.stdout.read().decode().split()
        if p.wait() != 0:
            print("discard_client failed")
            sys.exit(1)
        n += int(out[1])
    return time.time() - t0, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=50)
    ap.add_argument("--messages", type=int, default=200, help="per source")
    ap.add_argument("--max-size", type=int, default=30000)
    ap.add_argument("--nice", type=int, default=10, help="the server's nice value")
    ap.add_argument("--bin", default=vault.BIN)
    ap.add_argument("--discard", default=os.path.join(os.path.dirname(vault.BIN), "discard_client"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    users = [("u%02d" % i, "pw-%02d-secret" % i) for i in range(args.sources)]
    alone = ("all", "pw-all-secret")
    with dovecot.Dovecot(users=users + [alone], nice=args.nice) as d:
        total_bytes = 0
        everything = {f: [] for f in FOLDERS}
        per = args.messages // len(FOLDERS)
        for i, (u, _) in enumerate(users):
            gen = mailgen.MailGen(seed=1000 + i, max_size=args.max_size)
            spec = {f: gen.messages(per) for f in FOLDERS}
            d.fill(spec, user=u)
            for f in FOLDERS:
                everything[f].extend(spec[f])
                total_bytes += sum(len(m) for m in spec[f])
        d.fill(everything, user=alone[0])
        n = per * len(FOLDERS) * len(users)
        print("server: %d users x %d messages = %d messages, %.1f MB" % (
            len(users), per * len(FOLDERS), n, total_bytes / 1e6))

        res = {"many": [], "one": [], "dmany": [], "done": []}
        probes = []
        for rnd in range(args.rounds):
            for k, us in (("dmany", users), ("done", [alone])):
                sec, got = run_discard(args.discard, d, us)
                if got != n:
                    print("discard client fetched %d of %d messages" % (got, n))
                    sys.exit(1)
                res[k].append(sec)
            for k, us in (("many", users), ("one", [alone])):
                r = run_engine(args.bin, d, us, probe=(k == "many"))
                res[k].append(r[0])
                if r[3]:
                    probes.append(r[3])
            print("round %d: %d sources %.2f s, 1 source %.2f s; discard: %d at once %.2f s, "
                  "1 %.2f s" % (rnd + 1, len(users), res["many"][-1], res["one"][-1],
                                len(users), res["dmany"][-1], res["done"][-1]), flush=True)
        med = {k: statistics.median(v) for k, v in res.items()}
        for name, k in (("%d sources" % len(users), "many"), ("1 source", "one"),
                        ("discard x%d" % len(users), "dmany"), ("discard x1", "done")):
            print("%-11s %6.2f s  %6.0f msg/s  %6.1f MB/s  (median of %d)" % (
                name, med[k], n / med[k], total_bytes / 1e6 / med[k], args.rounds))
        print("throughput of %d sources / 1 source: %.2fx" % (len(users), med["one"] / med["many"]))
        print("the server's own: %d discard clients at once / 1: %.2fx" % (
            len(users), med["done"] / med["dmany"]))
        print("%d sources / %d discard clients at once: %.2fx; 1 source / 1 discard client: %.2fx" % (
            len(users), len(users), med["dmany"] / med["many"], med["done"] / med["one"]))
        samples = [x for lp in probes for x in lp.samples]
        if samples:
            print("control socket while %d sources imported: %d answers, median %.1f ms, "
                  "worst %.1f ms" % (len(users), len(samples), 1000 * statistics.median(samples),
                                     1000 * max(samples)))


if __name__ == "__main__":
    main()
