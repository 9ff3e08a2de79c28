"""Checks of a data folder after a fault: every server message archived
exactly once (locations and blobs), nothing else, and `emailvault verify`
passing. Shared by the fault, hostile-server and kill tests."""
import hashlib
import os
import shutil
import sqlite3
import stat
import tempfile
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
    check_modes(tc, data)
    r = vault.run("verify", "--data", data, timeout=120)
    tc.assertEqual(r.returncode, 0, r.stdout + r.stderr)


def check_modes(tc, data):
    """The store's files are 0600 and its folders 0700."""
    for root, dirs, files in os.walk(os.path.join(data, "packs")):
        tc.assertEqual(stat.S_IMODE(os.stat(root).st_mode), 0o700, root)
        for f in files:
            p = os.path.join(root, f)
            tc.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o600, p)


def stored_messages(data):
    """{hash: bytes} of every archived message, read back through the engine
    (one export: the store's own reader, both layouts)."""
    tmp = tempfile.mkdtemp(prefix="ev-export-")
    try:
        r = vault.run("export", "--data", data, "--format", "eml", "--out", os.path.join(tmp, "x"),
                      timeout=300)
        if r.returncode != 0:
            raise AssertionError("export failed: " + r.stderr)
        out = {}
        for name in os.listdir(os.path.join(tmp, "x")):
            with open(os.path.join(tmp, "x", name), "rb") as f:
                raw = f.read()
            out[hashlib.sha256(raw).hexdigest()] = raw
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def record_of(data, h):
    """(segment file, record offset, stored length) of message H in the packs."""
    seg, off, length = db_rows(data, "SELECT pack_segment, pack_offset, pack_length FROM messages "
                               "WHERE hash = ?", h)[0]
    return os.path.join(data, "packs", "%08d.seg" % seg), off, length


def corrupt_message(data, h):
    """Flips one byte of message H's stored bytes."""
    path, off, length = record_of(data, h)
    with open(path, "r+b") as f:
        f.seek(off + 56 + length // 2)
        b = f.read(1)
        f.seek(off + 56 + length // 2)
        f.write(bytes([b[0] ^ 0x55]))


def last_stored(data):
    """The message stored last in the open segment (cut_message can take it)."""
    return db_rows(data, "SELECT hash FROM messages WHERE pack_segment = "
                   "(SELECT max(pack_segment) FROM messages) ORDER BY pack_offset DESC LIMIT 1")[0][0]


def cut_message(data, h):
    """Cuts the segment off before message H (the last one stored): its bytes
    are gone as a lost disk block would take them."""
    path, off, _ = record_of(data, h)
    os.truncate(path, off)


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
