#!/usr/bin/env python3
"""The engine against its peers (issue 12): a private Dovecot on 127.0.0.1
is filled with a deterministic generated mailbox (12 folders), then, in
rotation and on the same mailbox, every round times

  emailvault        initial import into an empty archive with the indexer on
                    (and when the index caught up), then a no-change re-sync
                    (`run --once` on the same archive);
  mbsync            Debian's isync: a full pull into an empty Maildir, with
                    fsync, over implicit TLS checking the harness's CA;
  discard           tests/bench/discard_client.c: every message fetched and
                    thrown away, the server's limit on one connection;
  (--indexer-off)   the engine's import again with EMAILVAULT_INDEXER=off:
                    the archiving's own CPU per message, against mbsync's.

Medians over the rounds: messages, MB, wall s, CPU s (user, system), peak
RSS, msg/s, MB/s and the ratios to mbsync and to the discard client. Not a
test: run it by hand (build first: cmake --build build), e.g.

    python3 tests/bench/bench_peers.py --messages 20000 --mix small --rounds 3

Every process runs under /usr/bin/time: its peak RSS is its own (a child of
this Python would count the pages it had before exec) and its CPU is what
wait4 reports, threads and children included.
"""
import argparse
import atexit
import datetime
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
import dovecot  # noqa: E402
import mailgen  # noqa: E402
import rgw      # noqa: E402
import vault    # noqa: E402

FOLDERS = ["INBOX"] + ["Folder%02d" % i for i in range(1, 12)]
MIXES = ("small", "realistic")


class Mailbox:
    """The generated mail, made while Dovecot's fill writes it (2 GB need not
    sit in memory): small is 2-30 KB log-uniform; realistic is ~10 % of
    0.1-2 MB messages with an attachment, the rest 2-50 KB log-uniform."""

    def __init__(self, mix, seed):
        self.mix = mix
        self.gen = mailgen.MailGen(seed, large_fraction=0)
        self.rng = random.Random(seed * 1009 + 3)
        self.messages = self.bytes = 0

    def one(self):
        if self.mix == "small":
            raw = self.gen.message(size=int(2000 * 15 ** self.rng.random()))
        elif self.rng.random() < 0.10:
            raw = self.gen.message(size=int(self.rng.uniform(100e3, 2e6)), kind="mixed")
        else:
            raw = self.gen.message(size=int(2000 * 25 ** self.rng.random()))
        self.messages += 1
        self.bytes += len(raw)
        return raw

    def folder(self, n):
        for _ in range(n):
            yield self.one()


def split(total, n):
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


def proc_cpu(pid):
    """(user, system) seconds of a running process (all its threads)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def rss_anon_kib(pid):
    """The process's private memory now (peak RSS also counts the pages
    of archive.db it reads through its mapping: the kernel's page cache)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def child_of(pid, timeout=5):
    """The process /usr/bin/time started."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError("no child of %d" % pid)


class Timed:
    """A command under /usr/bin/time; result() gives wall, user, sys, RSS."""

    def __init__(self, cmd, tmp, env=None, stdin=None, stdout=None):
        self.out = os.path.join(tmp, "time.%d" % time.monotonic_ns())
        self.t0 = time.monotonic()
        self.t0_wall = time.time()
        self.proc = subprocess.Popen(["/usr/bin/time", "-f", "%U %S %M", "-o", self.out] + cmd,
                                     env=env, stdin=subprocess.PIPE if stdin else None,
                                     stdout=stdout)
        if stdin:
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()

    def wait(self, timeout=3600):
        # A blocking wait4: Popen.wait(timeout) polls, sleeping up to 50 ms
        # between polls, and that sleep was in every wall time (a 0.06 s
        # re-sync measured 0.06 or 0.11 s by where the poll fell).
        killer = threading.Timer(timeout, self.proc.kill)
        killer.start()
        try:
            rc = self.proc.wait()
        finally:
            killer.cancel()
        self.wall = time.monotonic() - self.t0
        if rc == -9 and self.wall >= timeout:
            raise RuntimeError("%s ran past %d s" % (self.proc.args, timeout))
        with open(self.out) as f:
            last = f.read().strip().splitlines()[-1].split()
        self.user, self.sys, self.rss_mib = float(last[0]), float(last[1]), int(last[2]) / 1024
        return rc


def logged_at(log, needle):
    """Seconds since the epoch of the first line of the engine's log that
    holds NEEDLE (its timestamps are UTC, to the millisecond), or None."""
    try:
        with open(log, errors="replace") as f:
            for line in f:
                if needle in line:
                    t = datetime.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f")
                    return t.replace(tzinfo=datetime.timezone.utc).timestamp()
    except (OSError, ValueError):
        pass
    return None


def row(tool, messages, nbytes, wall, user, sys_, rss, extra=""):
    return {"tool": tool, "messages": messages, "mb": nbytes / 1e6, "wall": wall, "user": user,
            "sys": sys_, "rss": rss, "extra": extra}


# ---- the tools ----------------------------------------------------------------------------

def source_text(d, args):
    fields = {"ca_file": '"%s"' % d.cert_path}
    if args.connections:
        fields["connections"] = str(args.connections)
    return vault.source_file(port=d.tls_port, username=d.user, password=d.password, **fields)


def engine_rounds(d, args, box, tmp, s3=None, indexer=True):
    """The initial import (index on), then a no-change re-sync; with S3 (an
    rgw.Rgw) the messages stored in its bucket "bench", under a prefix of
    their own. indexer=False: EMAILVAULT_INDEXER=off, the import alone (no
    index to wait for, no re-sync): the archiving's own CPU."""
    sources = os.path.join(tmp, "sources.d")
    data = os.path.join(tmp, "data")
    config = os.path.join(tmp, "emailvault.lua")
    os.makedirs(sources)
    with open(os.path.join(sources, "bench.lua"), "w") as f:
        f.write(source_text(d, args))
    with open(config, "w") as f:
        if s3:
            f.write('return { storage = s3 { endpoint = "%s", bucket = "bench", prefix = "%s/", '
                    'access_key = "%s", secret_key = "%s" } }\n' % (
                        s3.endpoint, os.path.basename(tmp), s3.access_key, s3.secret_key))
        else:
            f.write("return {}\n")
    log = os.path.join(tmp, "engine.log")
    env = None if indexer else dict(os.environ, EMAILVAULT_INDEXER="off")
    t = Timed([args.bin, "run", "--sources", sources, "--data", data, "--config", config,
               "--log", log], tmp, env=env)
    pid = child_of(t.proc.pid)
    imported = caught_up = cpu_at_import = None
    db = None
    anon_kib = 0
    while time.monotonic() - t.t0 < 3600:
        anon_kib = max(anon_kib, rss_anon_kib(pid))
        if t.proc.poll() is not None:
            raise RuntimeError("the engine exited (%s); log %s" % (t.proc.returncode, log))
        if db is None and os.path.exists(os.path.join(data, "archive.db")):
            db = sqlite3.connect("file:%s/archive.db?mode=ro" % data, uri=True, timeout=5)
        try:
            st = db and db.execute("SELECT status FROM sources").fetchone()
            if imported is None and st and st[0] == "active":
                imported = time.monotonic() - t.t0
                cpu_at_import = proc_cpu(pid)
                stored = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM messages"
                                    " JOIN locations USING (hash)").fetchone()
            if imported is not None and (not indexer or db.execute(
                    "SELECT count(*) FROM messages WHERE indexed = 0").fetchone()[0] == 0):
                caught_up = time.monotonic() - t.t0
                break
        except sqlite3.OperationalError:
            pass                # the schema is being created
        time.sleep(0.05)
    db.close()
    os.kill(pid, 15)
    if t.wait() != 0:
        raise RuntimeError("the engine failed; log %s" % log)
    # The import's end from the engine's own log, not from the 50 ms poll
    # above, which would add up to 50 ms to it (the index's catching up
    # stays polled: an upper bound, against a 10 s target).
    active = logged_at(log, "status from=importing to=active")
    if active is not None and 0 < active - t.t0_wall <= imported:
        imported = active - t.t0_wall
    if stored[0] != box.messages:
        raise RuntimeError("the engine archived %d of %d messages; log %s" % (
            stored[0], box.messages, log))
    name = "emailvault import (S3)" if s3 else "emailvault import"
    if not indexer:
        name = "emailvault import, indexer off"
    imp = row(name, stored[0], stored[1], imported, cpu_at_import[0], cpu_at_import[1], t.rss_mib)
    imp["anon"] = anon_kib / 1024
    if indexer:
        imp["lag"] = caught_up - imported
    imp["cpu_total"] = t.user + t.sys
    pack = pack_sizes(data)
    if not indexer:
        return imp, None, pack

    r = Timed([args.bin, "run", "--once", "--sources", sources, "--data", data,
               "--config", config, "--log", log + ".resync"], tmp)
    if r.wait() != 0:
        raise RuntimeError("the re-sync failed; log %s.resync" % log)
    resync = row("emailvault re-sync (S3)" if s3 else "emailvault re-sync", 0, 0, r.wall, r.user, r.sys, r.rss_mib)
    return imp, resync, pack


def pack_sizes(data):
    """Stored bytes (the segment files) against the raw bytes they hold."""
    db = sqlite3.connect("file:%s/archive.db?mode=ro" % data, uri=True)
    raw, n = db.execute("SELECT coalesce(sum(size), 0), count(*) FROM messages").fetchone()
    zstd = db.execute("SELECT count(*) FROM messages WHERE pack_codec = 1").fetchone()[0]
    db.close()
    packs = os.path.join(data, "packs")
    stored = sum(os.path.getsize(os.path.join(packs, f)) for f in os.listdir(packs)
                 if f.endswith(".seg"))
    return {"raw": raw, "stored": stored, "messages": n, "zstd": zstd,
            "db": os.path.getsize(os.path.join(data, "archive.db"))}


MBSYNC_CONF = """FSync yes

IMAPAccount bench
Host 127.0.0.1
Port {port}
User {user}
Pass {password}
SSLType IMAPS
SSLVersions TLSv1.2 TLSv1.3
CertificateFile {ca}
AuthMechs LOGIN

IMAPStore bench-far
Account bench

MaildirStore bench-near
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel bench
Far :bench-far:
Near :bench-near:
Patterns *
Create Near
Sync Pull
SyncState *
"""


def mbsync_round(d, args, box, tmp):
    maildir = os.path.join(tmp, "Mail")
    os.makedirs(maildir)
    conf = os.path.join(tmp, "mbsyncrc")
    with open(conf, "w") as f:
        f.write(MBSYNC_CONF.format(port=d.tls_port, user=d.user, password=d.password,
                                   ca=d.cert_path, maildir=maildir))
    os.chmod(conf, 0o600)
    t = Timed(["mbsync", "-q", "-c", conf, "-a"], tmp)
    if t.wait() != 0:
        raise RuntimeError("mbsync failed")
    n = nbytes = 0
    for root, _, files in os.walk(maildir):
        if os.path.basename(root) in ("cur", "new"):
            for name in files:
                n += 1
                nbytes += os.path.getsize(os.path.join(root, name))
    if n != box.messages:
        raise RuntimeError("mbsync pulled %d of %d messages" % (n, box.messages))
    return row("mbsync (fsync)", n, nbytes, t.wall, t.user, t.sys, t.rss_mib)


def discard_round(d, args, box, tmp):
    t = Timed([args.discard, "127.0.0.1", str(d.tls_port), d.user, d.cert_path], tmp,
              stdin=(d.password + "\n").encode(), stdout=subprocess.PIPE)
    out = t.proc.stdout.read().decode()
    if t.wait() != 0:
        raise RuntimeError("discard_client failed")
    f = out.split()
    n, nbytes = int(f[1]), int(f[3])
    if n != box.messages:
        raise RuntimeError("discard_client fetched %d of %d messages" % (n, box.messages))
    return row("discard client", n, nbytes, t.wall, t.user, t.sys, t.rss_mib)


# ---- the report ---------------------------------------------------------------------------

def median_row(rows):
    m = statistics.median
    out = dict(rows[0])
    for k in ("wall", "user", "sys", "rss", "mb", "lag", "cpu_total", "anon"):
        if k in out:
            out[k] = m(r[k] for r in rows)
    if "lag" in out:
        out["extra"] = "index +%.2f s, anonymous memory at most %.1f MiB" % (out["lag"], out["anon"])
    elif "anon" in out:
        out["extra"] = "anonymous memory at most %.1f MiB" % out["anon"]
    return out


def report(results, args, box, load):
    med = {tool: median_row(rows) for tool, rows in results.items()}
    mb_rate = {t: r["mb"] / r["wall"] for t, r in med.items() if r["messages"]}
    msg_rate = {t: r["messages"] / r["wall"] for t, r in med.items() if r["messages"]}
    print()
    print("%d messages (%.1f MB), mix %s, %d folders, %d rounds, medians; load average %s" % (
        box.messages, box.bytes / 1e6, args.mix, len(FOLDERS), args.rounds, load))
    head = ("tool", "msgs", "MB", "wall s", "user s", "sys s", "RSS MiB", "msg/s", "MB/s",
            "x mbsync", "x discard", "")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for tool, r in med.items():
        if r["messages"]:
            rate = msg_rate[tool]
            cells = [tool, "%d" % r["messages"], "%.1f" % r["mb"], "%.2f" % r["wall"],
                     "%.2f" % r["user"], "%.2f" % r["sys"], "%.1f" % r["rss"], "%.0f" % rate,
                     "%.1f" % mb_rate[tool],
                     "%.2f" % (rate / msg_rate["mbsync (fsync)"]),
                     "%.2f" % (rate / msg_rate["discard client"]), r["extra"]]
        else:
            cells = [tool, "-", "-", "%.3f" % r["wall"], "%.2f" % r["user"], "%.2f" % r["sys"],
                     "%.1f" % r["rss"], "", "", "", "", r["extra"]]
        print("| " + " | ".join(cells) + " |")
    imp = med["emailvault import"]
    print("engine CPU per message: %.0f us (mbsync %.0f us); engine CPU until the index caught "
          "up: %.2f s" % (
              (imp["user"] + imp["sys"]) / imp["messages"] * 1e6,
              (med["mbsync (fsync)"]["user"] + med["mbsync (fsync)"]["sys"])
              / med["mbsync (fsync)"]["messages"] * 1e6, imp["cpu_total"]))
    off = med.get("emailvault import, indexer off")
    if off:
        print("engine CPU per message with the indexer off: %.0f us" % (
            (off["user"] + off["sys"]) / off["messages"] * 1e6))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--mix", choices=MIXES, default="small")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--folders", type=int, default=12,
                    help="folders the mail is spread over (e.g. 1000 for the many-folder re-sync)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--s3", action="store_true",
                    help="also the engine storing on S3: a throw-away Ceph RADOS Gateway on "
                    "127.0.0.1 (tests/harness/rgw.py), in the same rotation")
    ap.add_argument("--indexer-off", action="store_true",
                    help="also the engine's import with EMAILVAULT_INDEXER=off, in the same "
                    "rotation: the archiving's CPU per message without the index's")
    ap.add_argument("--connections", type=int, default=0,
                    help="connections = N in the engine's source (if the engine has the field)")
    ap.add_argument("--bin", default=vault.BIN)
    ap.add_argument("--discard", default=os.path.join(os.path.dirname(vault.BIN), "discard_client"))
    ap.add_argument("--write-mix", metavar="DIR",
                    help="only write the mailbox's messages as files under DIR (for bench_zstd)")
    args = ap.parse_args()
    if args.folders != 12:
        FOLDERS[:] = ["INBOX"] + ["F%04d" % i for i in range(1, args.folders)]
    if args.write_mix:
        box = Mailbox(args.mix, args.seed)
        for folder, n in zip(FOLDERS, split(args.messages, len(FOLDERS))):
            os.makedirs(os.path.join(args.write_mix, folder))
            for i, raw in enumerate(box.folder(n)):
                with open(os.path.join(args.write_mix, folder, "%06d.eml" % i), "wb") as f:
                    f.write(raw)
        print("%d messages, %.1f MB in %s" % (box.messages, box.bytes / 1e6, args.write_mix))
        return
    for prog in (args.bin, args.discard):
        if not os.access(prog, os.X_OK):
            sys.exit("%s is missing: cmake --build build" % prog)
    if shutil.which("mbsync") is None:
        sys.exit("mbsync is missing: apt-get install -y isync")

    s3 = None
    if args.s3:
        s3 = rgw.Rgw().start()
        atexit.register(s3.stop)
        rgw.S3(s3.endpoint, s3.access_key, s3.secret_key).create_bucket("bench")
    with dovecot.Dovecot(autocreate_special=False) as d:
        if args.connections:
            chk = tempfile.mkdtemp(prefix="ev-peers-")
            with open(os.path.join(chk, "bench.lua"), "w") as f:
                f.write(source_text(d, args))
            r = subprocess.run([args.bin, "check", "--sources", chk], capture_output=True,
                               text=True)
            shutil.rmtree(chk)
            if r.returncode != 0:
                sys.exit("this engine does not take connections = %d:\n%s" % (
                    args.connections, r.stdout + r.stderr))
        box = Mailbox(args.mix, args.seed)
        t0 = time.monotonic()
        d.fill({f: box.folder(n) for f, n in zip(FOLDERS, split(args.messages, len(FOLDERS)))})
        print("server: %d messages, %.1f MB in %d folders, filled in %.0f s" % (
            box.messages, box.bytes / 1e6, len(FOLDERS), time.monotonic() - t0), flush=True)
        tools = ["emailvault import", "emailvault re-sync"]
        units = ["engine"]
        if s3:
            tools += ["emailvault import (S3)", "emailvault re-sync (S3)"]
            units.append("engine-s3")
        if args.indexer_off:
            tools.append("emailvault import, indexer off")
            units.append("engine-noindex")
        results = {t: [] for t in tools + ["mbsync (fsync)", "discard client"]}
        packs = []
        units += ["mbsync", "discard"]
        loads = []
        for rnd in range(args.rounds):
            order = units[rnd % len(units):] + units[:rnd % len(units)]
            for unit in order:
                loads.append(os.getloadavg()[0])
                tmp = tempfile.mkdtemp(prefix="ev-peers-")
                try:
                    if unit == "engine-noindex":
                        imp, _, _ = engine_rounds(d, args, box, tmp, indexer=False)
                        results[imp["tool"]].append(imp)
                        print("round %d: %s %.2f s" % (rnd + 1, imp["tool"], imp["wall"]),
                              flush=True)
                    elif unit in ("engine", "engine-s3"):
                        imp, resync, pack = engine_rounds(d, args, box, tmp,
                                                          s3 if unit == "engine-s3" else None)
                        results[imp["tool"]].append(imp)
                        results[resync["tool"]].append(resync)
                        if unit == "engine":
                            packs.append(pack)
                        print("round %d: %s %.2f s (index +%.2f s), re-sync %.3f s" % (
                            rnd + 1, imp["tool"], imp["wall"], imp["lag"], resync["wall"]),
                            flush=True)
                    elif unit == "mbsync":
                        r = mbsync_round(d, args, box, tmp)
                        results["mbsync (fsync)"].append(r)
                        print("round %d: mbsync %.2f s" % (rnd + 1, r["wall"]), flush=True)
                    else:
                        r = discard_round(d, args, box, tmp)
                        results["discard client"].append(r)
                        print("round %d: discard %.2f s" % (rnd + 1, r["wall"]), flush=True)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        load = "%.1f-%.1f" % (min(loads), max(loads))
        report(results, args, box, load)
        p = packs[-1]
        print("pack store: %d messages, raw %.1f MB, segments %.1f MB (%.3f of raw), %d of them "
              "zstd; archive.db %.1f MB (%.0f bytes per message)" % (
                  p["messages"], p["raw"] / 1e6, p["stored"] / 1e6, p["stored"] / p["raw"],
                  p["zstd"], p["db"] / 1e6, p["db"] / p["messages"]))


if __name__ == "__main__":
    main()
