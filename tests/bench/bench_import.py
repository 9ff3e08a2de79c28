#!/usr/bin/env python3
"""Import benchmark: a private Dovecot filled with generated mail, then
`emailvault run --once` archives it. Prints messages/s, MB/s and the engine's
peak RSS. Not a test: run it by hand, e.g.

    python3 tests/bench/bench_import.py --messages 5000 --pipeline 4 --batch 200
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
import dovecot  # noqa: E402
import mailgen  # noqa: E402
import vault    # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--folders", type=int, default=4)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--pipeline", type=int, default=4)
    ap.add_argument("--tls", choices=("tls", "starttls", "plain"), default="tls")
    ap.add_argument("--bin", default=vault.BIN)
    args = ap.parse_args()

    per = args.messages // args.folders
    spec = {"INBOX": args.messages - per * (args.folders - 1)}
    for i in range(1, args.folders):
        spec["Folder%d" % i] = per
    with dovecot.Dovecot() as d:
        d.create_folders([f for f in spec if f != "INBOX"])
        t0 = time.time()
        box = mailgen.build_mailbox(spec, seed=1, duplicates=0)
        d.fill(box)
        total_bytes = sum(len(m) for msgs in box.values() for m in msgs)
        print("server: %d messages, %.1f MB, filled in %.1f s" % (
            args.messages, total_bytes / 1e6, time.time() - t0))
        tmp = tempfile.mkdtemp(prefix="ev-bench-")
        sources = os.path.join(tmp, "sources.d")
        os.makedirs(sources)
        tls = {"tls": ("true", d.tls_port), "starttls": ('"starttls"', d.plain_port),
               "plain": ("false", d.plain_port)}[args.tls]
        with open(os.path.join(sources, "bench.lua"), "w") as f:
            f.write(vault.source_file(port=tls[1], tls=tls[0], username=d.user, password=d.password,
                                      ca_file='"%s"' % d.cert_path, fetch_batch=args.batch,
                                      pipeline=args.pipeline))
        cmd = [args.bin, "run", "--once", "--sources", sources, "--data", os.path.join(tmp, "data"),
               "--log", os.path.join(tmp, "engine.log")]
        del box   # the generated mail is no longer needed here
        t0 = time.time()
        proc = subprocess.Popen(cmd)
        # ru_maxrss would count the pages the child had as a fork of this
        # Python before exec; VmHWM of the exec'd image is the engine's own.
        hwm_kb = 0
        while True:
            try:
                with open("/proc/%d/status" % proc.pid) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            hwm_kb = max(hwm_kb, int(line.split()[1]))
            except OSError:
                pass
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
        elapsed = time.time() - t0
        rc = os.waitstatus_to_exitcode(status)
        if rc != 0:
            print("engine exited with %d; log in %s" % (rc, tmp))
            sys.exit(1)
        print("archived %d messages (%.1f MB) in %.2f s: %.0f messages/s, %.1f MB/s, "
              "peak RSS %.1f MB, CPU user %.2f s sys %.2f s (batch %d, pipeline %d, %s)" % (
                  args.messages, total_bytes / 1e6, elapsed, args.messages / elapsed,
                  total_bytes / 1e6 / elapsed, hwm_kb / 1024, ru.ru_utime, ru.ru_stime,
                  args.batch, args.pipeline, args.tls))
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
