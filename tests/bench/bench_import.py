#!/usr/bin/env python3
"""Import benchmark: a private Dovecot filled with generated mail, then
`emailvault run --once` archives it. Prints messages/s, MB/s and the engine's
peak RSS, for each storage asked for: the data folder (local) and S3 (a
throw-away Ceph RADOS Gateway on 127.0.0.1, tests/harness/rgw.py). Not a
test: run it by hand, e.g.

    python3 tests/bench/bench_import.py --messages 5000 --pipeline 4 --batch 200 --storage local,s3
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
import rgw      # noqa: E402
import vault    # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--folders", type=int, default=4)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--pipeline", type=int, default=4)
    ap.add_argument("--tls", choices=("tls", "starttls", "plain"), default="tls")
    ap.add_argument("--bin", default=vault.BIN)
    ap.add_argument("--storage", default="local", help="local, s3 or local,s3")
    args = ap.parse_args()
    s3 = None
    if "s3" in args.storage.split(","):
        s3 = rgw.Rgw().start()
        rgw.S3(s3.endpoint, s3.access_key, s3.secret_key).create_bucket("bench")
    try:
        run(args, s3)
    finally:
        if s3:
            s3.stop()


def run(args, s3):
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
        del box   # the generated mail is no longer needed here
        for storage in args.storage.split(","):
            once(args, d, storage, s3, total_bytes)


def once(args, d, storage, s3, total_bytes):
    tmp = tempfile.mkdtemp(prefix="ev-bench-")
    sources = os.path.join(tmp, "sources.d")
    os.makedirs(sources)
    config = os.path.join(tmp, "emailvault.lua")
    with open(config, "w") as f:
        if storage == "s3":
            f.write('return { storage = s3 { endpoint = "%s", bucket = "bench", prefix = "%s/", '
                    'access_key = "%s", secret_key = "%s" } }\n' % (
                        s3.endpoint, os.path.basename(tmp), s3.access_key, s3.secret_key))
        else:
            f.write("return {}\n")
    tls = {"tls": ("true", d.tls_port), "starttls": ('"starttls"', d.plain_port),
           "plain": ("false", d.plain_port)}[args.tls]
    with open(os.path.join(sources, "bench.lua"), "w") as f:
        f.write(vault.source_file(port=tls[1], tls=tls[0], username=d.user, password=d.password,
                                  ca_file='"%s"' % d.cert_path, fetch_batch=args.batch,
                                  pipeline=args.pipeline))
    cmd = [args.bin, "run", "--once", "--sources", sources, "--data", os.path.join(tmp, "data"),
           "--config", config, "--log", os.path.join(tmp, "engine.log")]
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
    print("%-5s archived %d messages (%.1f MB) in %.2f s: %.0f messages/s, %.1f MB/s, "
          "peak RSS %.1f MB, CPU user %.2f s sys %.2f s (batch %d, pipeline %d, %s)" % (
              storage, args.messages, total_bytes / 1e6, elapsed, args.messages / elapsed,
              total_bytes / 1e6 / elapsed, hwm_kb / 1024, ru.ru_utime, ru.ru_stime,
              args.batch, args.pipeline, args.tls))
    subprocess.run(["rm", "-rf", tmp])

if __name__ == "__main__":
    main()
