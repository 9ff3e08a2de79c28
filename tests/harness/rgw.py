"""A throw-away S3 server for tests: Ceph RADOS Gateway (Debian 12's radosgw 16.2) on a
one-node cluster whose only OSD keeps its objects in memory (memstore).

Usage::

    from rgw import Rgw
    with Rgw() as s3:                 # or s3 = Rgw(); s3.start(); ...; s3.stop()
        s3.endpoint                   # "http://127.0.0.1:PORT"
        s3.access_key, s3.secret_key  # a user made for the test
        s3.user("bob")                # another user: (access_key, secret_key)

One ceph-mon, one ceph-osd (osd_objectstore = memstore, gone at stop) and one radosgw
(beast frontend) on free 127.0.0.1 ports, with auth off inside the cluster (S3 clients
still sign every request with AWS Signature V4: radosgw checks it). Start-up takes about
2-4 s on two cores (the settings below make the monitor commit fast; with Ceph's default
paxos interval it takes ~12 s); share one instance per test file (setUpModule). The
daemons are started with PR_SET_PDEATHSIG, so they die with the test process.

Set EMAILVAULT_KEEP_TMP=1 to keep the temporary folder (logs, ceph.conf) after stop.
Facts this rests on: ../../../shared/TESTING-NOTES.md ("A real S3 for tests").
Python 3 standard library only.
"""

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

__all__ = ["Rgw", "RgwError", "available"]

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")


class RgwError(RuntimeError):
    """Raised when the cluster cannot be started or an admin command fails."""


def available():
    """None when every Ceph binary needed is installed, else why not (for skipTest)."""
    missing = [b for b in BINARIES if shutil.which(b, path="/usr/bin:/usr/sbin:/bin:/sbin:" +
                                                   os.environ.get("PATH", "")) is None]
    if missing:
        return "Ceph RADOS Gateway not installed (%s): .ci/install-deps --test" % " ".join(missing)
    return None


def _free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


CONF = """[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon_port}
public_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_msgr2 = true
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
ms_client_mode = crc
ms_cluster_mode = crc
ms_service_mode = crc
run_dir = {d}/run
log_file = {d}/log/$name.log
admin_socket = {d}/run/$name.asok
pid_file = {d}/run/$name.pid
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_crush_chooseleaf_type = 0
osd_pool_default_pg_num = 4
osd_pool_default_pgp_num = 4
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
mon_data_avail_warn = 1
mon_data_avail_crit = 0
osd_fast_shutdown = true
[mon]
mon_data = {d}/mon/$cluster-$id
[osd]
osd_objectstore = memstore
osd_data = {d}/osd/$cluster-$id
memstore_device_bytes = {memstore_bytes}
[client.rgw.test]
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw_thread_pool_size = 32
rgw_multipart_min_part_size = {min_part}
rgw_data = {d}/rgw
"""


class Rgw:
    """One throw-away cluster. MIN_PART: radosgw's smallest multipart part (bytes; the
    5 MiB default lowered so tests can upload multipart objects of a few hundred KiB)."""

    def __init__(self, min_part=64 * 1024, memstore_bytes=2 << 30):
        self.min_part = min_part
        self.memstore_bytes = memstore_bytes
        self.dir = None
        self.procs = []
        self.endpoint = None
        self.access_key = "EVTESTACCESSKEY00001"
        self.secret_key = "evTestSecretKey/0000000000000000000000001"
        self.start_seconds = None

    # -- life cycle -------------------------------------------------------------------

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _run(self, *args, timeout=60):
        r = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, preexec_fn=_die_with_parent)
        if r.returncode != 0:
            raise RgwError("%s failed (%d): %s%s" % (" ".join(args[:3]), r.returncode,
                           r.stderr.decode("utf-8", "replace")[-2000:], self._logs_tail()))
        return r.stdout.decode("utf-8", "replace")

    def _spawn(self, *args):
        with open(os.path.join(self.dir, "log", "stdout"), "ab") as out:
            p = subprocess.Popen(list(args) + ["-f"], stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self.procs.append(p)
        return p

    def _logs_tail(self):
        out = []
        for name in ("client.rgw.test.log", "stdout"):
            path = os.path.join(self.dir or "", "log", name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    out.append("\n--- %s:\n%s" % (name, f.read()[-1500:].decode("utf-8", "replace")))
        return "".join(out)

    def start(self, timeout=60):
        why = available()
        if why:
            raise RgwError(why)
        t0 = time.monotonic()
        self.dir = tempfile.mkdtemp(prefix="ev-rgw-")
        for sub in ("run", "log", "mon", "osd", "rgw"):
            os.makedirs(os.path.join(self.dir, sub))
        mon_port, rgw_port = _free_ports(2)
        fsid = str(uuid.uuid4())
        self.conf = os.path.join(self.dir, "ceph.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(fsid=fsid, mon_port=mon_port, rgw_port=rgw_port, d=self.dir,
                                min_part=self.min_part, memstore_bytes=self.memstore_bytes))
        atexit.register(self.stop)
        try:
            c = self.conf
            monmap = os.path.join(self.dir, "monmap")
            self._run("monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                      "[v2:127.0.0.1:%d]" % mon_port, monmap)
            self._run("ceph-mon", "-c", c, "--mkfs", "-i", "a", "--monmap", monmap)
            self._spawn("ceph-mon", "-c", c, "-i", "a")
            osd_uuid = str(uuid.uuid4())
            osd_id = self._run("ceph", "-c", c, "--connect-timeout", "30", "osd", "new",
                               osd_uuid).strip()
            os.makedirs(os.path.join(self.dir, "osd", "ceph-" + osd_id), exist_ok=True)
            self._run("ceph-osd", "-c", c, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
            self._spawn("ceph-osd", "-c", c, "-i", osd_id)
            self._spawn("radosgw", "-c", c, "-n", "client.rgw.test")
            self.endpoint = "http://127.0.0.1:%d" % rgw_port
            self._wait_http(t0 + timeout)
            self.user("test", self.access_key, self.secret_key)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait_http(self, deadline):
        while True:
            for p in self.procs:
                if p.poll() is not None:
                    raise RgwError("%s exited (%d)%s" % (p.args[0], p.returncode, self._logs_tail()))
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=2).read()
                return
            except urllib.error.HTTPError:
                return          # any HTTP answer: the gateway serves
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RgwError("radosgw did not answer on %s%s" % (self.endpoint, self._logs_tail()))
            time.sleep(0.1)

    def user(self, uid, access_key=None, secret_key=None):
        """Creates user UID with these keys (made up when None): (access_key, secret_key)."""
        access_key = access_key or ("EV" + uuid.uuid4().hex[:18]).upper()
        secret_key = secret_key or uuid.uuid4().hex + uuid.uuid4().hex[:8]
        self._run("radosgw-admin", "-c", self.conf, "-n", "client.rgw.test", "user", "create",
                  "--uid=" + uid, "--display-name=" + uid, "--access-key=" + access_key,
                  "--secret-key=" + secret_key)
        return access_key, secret_key

    def admin(self, *args):
        """radosgw-admin ARGS on this cluster: its standard output."""
        return self._run("radosgw-admin", "-c", self.conf, "-n", "client.rgw.test", *args)

    def stop(self):
        # radosgw takes ~11 s to exit cleanly; it keeps no state and memstore keeps
        # nothing either, so after a short grace every daemon is killed.
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 2
        for p in reversed(self.procs):
            try:
                p.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        if self.dir and not os.environ.get("EMAILVAULT_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        elif self.dir:
            print("rgw: kept %s" % self.dir)
        self.dir = None


# ----------------------------------------------------------------------------------------
# A small S3 client for the tests' own checks (what is in the bucket), written apart from
# the engine's C client so the two check each other: AWS Signature V4, path-style URLs.

import datetime
import hashlib
import hmac
import urllib.parse
import xml.etree.ElementTree as ET

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3:
    def __init__(self, endpoint, access_key, secret_key, region="us-east-1"):
        self.endpoint = endpoint.rstrip("/")
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.host = urllib.parse.urlsplit(self.endpoint).netloc

    def request(self, method, bucket, key="", query=None, body=b"", headers=None):
        """(status, headers dict with lower-case names, body bytes)."""
        query = sorted((query or {}).items())
        path = "/" + bucket + ("/" + urllib.parse.quote(key, safe="/~") if key else "")
        qs = "&".join("%s=%s" % (urllib.parse.quote(k, safe="~"), urllib.parse.quote(v, safe="~"))
                      for k, v in query)
        now = datetime.datetime.utcnow()
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        phash = hashlib.sha256(body).hexdigest()
        h = {"host": self.host, "x-amz-date": amz_date, "x-amz-content-sha256": phash}
        for k, v in (headers or {}).items():
            h[k.lower()] = v
        names = sorted(h)
        canon = "\n".join([method, path, qs, "".join("%s:%s\n" % (n, h[n].strip()) for n in names),
                           ";".join(names), phash])
        scope = "%s/%s/s3/aws4_request" % (now.strftime("%Y%m%d"), self.region)
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canon.encode()).hexdigest()])
        k = ("AWS4" + self.secret_key).encode()
        for part in (now.strftime("%Y%m%d"), self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        h["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
            self.access_key, scope, ";".join(names), sig)
        req = urllib.request.Request(self.endpoint + path + ("?" + qs if qs else ""),
                                     data=body if method in ("PUT", "POST") else None,
                                     method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def _ok(self, what, r):
        if r[0] // 100 != 2:
            raise RgwError("%s: HTTP %d %s" % (what, r[0], r[2][:300]))
        return r

    def create_bucket(self, bucket):
        self._ok("create bucket", self.request("PUT", bucket))

    def put(self, bucket, key, body):
        self._ok("put", self.request("PUT", bucket, key, body=body))

    def get(self, bucket, key):
        """The object's bytes, or None when there is no such object."""
        r = self.request("GET", bucket, key)
        if r[0] == 404:
            return None
        return self._ok("get", r)[2]

    def delete(self, bucket, key):
        self._ok("delete", self.request("DELETE", bucket, key))

    def keys(self, bucket, prefix=""):
        """Every key under PREFIX, sorted (ListObjectsV2, all pages)."""
        out, token = [], None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            root = ET.fromstring(self._ok("list", self.request("GET", bucket, query=q))[2])
            out += [c.find(_NS + "Key").text for c in root.findall(_NS + "Contents")]
            if root.findtext(_NS + "IsTruncated") != "true":
                return out
            token = root.findtext(_NS + "NextContinuationToken")
