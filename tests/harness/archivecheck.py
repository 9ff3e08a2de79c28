"""Checks of a data folder after a fault: every server message archived
exactly once (locations and blobs), nothing else, and `emailvault verify`
passing. Shared by the fault, hostile-server and kill tests."""
import hashlib
import os
import sqlite3
import stat
import time

import vault


def db_rows(data, sql, *args):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "archive.db"), uri=True, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def server_state(dc, folders=None):
    """{(folder, uid): sha256} of what the Dovecot DC serves."""
    want = {}
    for folder in folders or dc.folder_names():
        for uid, raw in dc.server_messages(folder):
            want[(folder, uid)] = hashlib.sha256(raw).hexdigest()
    return want


def archived(data, source=None):
    """{(folder, uid): hash} at each folder's current UIDVALIDITY, and the
    number of location rows there (a duplicate would make them differ)."""
    sql = ("SELECT l.folder, l.uid, l.hash FROM locations l JOIN folders f "
           "ON f.source = l.source AND f.name = l.folder AND f.uidvalidity = l.uidvalidity")
    rows = db_rows(data, sql + (" WHERE l.source = ?" if source else ""), *([source] if source else []))
    return {(f, u): h for f, u, h in rows}, len(rows)


def wait_archived(data, want, source=None, timeout=60, proc=None):
    """Waits until the archive holds WANT; returns what it holds."""
    deadline = time.time() + timeout
    got = {}
    while True:
        try:
            got, _ = archived(data, source)
        except sqlite3.Error:
            got = {}
        if got == want:
            return got
        if (proc is not None and proc.poll() is not None) or time.time() >= deadline:
            return got
        time.sleep(0.1)


def check_complete(tc, data, want, source=None):
    """Asserts the archive of SOURCE is exactly WANT: each message once, each
    blob present and re-hashing to its name, mode 0600, and verify passes."""
    got, nrows = archived(data, source)
    tc.assertEqual(got, want)
    tc.assertEqual(nrows, len(want), "a location is recorded twice")
    hashes = set(want.values())
    msgs = {h for (h,) in db_rows(data, "SELECT hash FROM messages")}
    tc.assertTrue(hashes <= msgs)
    dups = db_rows(data, "SELECT source, folder, uidvalidity, uid, count(*) FROM locations "
                   "GROUP BY source, folder, uidvalidity, uid HAVING count(*) > 1")
    tc.assertEqual(dups, [])
    for h in hashes:
        p = os.path.join(data, "blobs", h[:2], h[2:4], h)
        with open(p, "rb") as f:
            tc.assertEqual(hashlib.sha256(f.read()).hexdigest(), h, p)
        tc.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o600)
    r = vault.run("verify", "--data", data, timeout=120)
    tc.assertEqual(r.returncode, 0, r.stdout + r.stderr)


def peak_rss_kib(pid):
    """VmHWM of a running process, in KiB (None once it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def sanitized(pid):
    """True when the process runs under AddressSanitizer, whose quarantine
    and redzones make its peak memory say nothing about the engine's."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False
