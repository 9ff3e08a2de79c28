"""src/s3/client.c against a real S3 (Ceph RADOS Gateway, tests/harness/rgw.py),
through tests/integration/s3_probe.c: signed PUT/GET/HEAD/DELETE, ranges,
If-None-Match, ListObjectsV2 paging past 1,000 keys, multipart above the part
size (parts in parallel), the server's errors (wrong secret, unknown key, no
such bucket, clock skew is not testable without faking the clock), retries on a
dropped connection, and what the other, independent client in the harness sees."""
import hashlib
import os
import subprocess
import tempfile
import threading
import time
import unittest
import socket

import rgw

S = None
PROBE = os.environ.get("EMAILVAULT_S3_PROBE") or os.path.join(
    os.path.dirname(os.environ.get("EMAILVAULT_BIN", "build/emailvault")), "s3_probe")
BUCKET = "probe-bucket"


def setUpModule():
    global S
    if rgw.available():
        raise unittest.SkipTest(rgw.available())
    S = rgw.Rgw(min_part=64 * 1024).start()
    rgw.S3(S.endpoint, S.access_key, S.secret_key).create_bucket(BUCKET)


def tearDownModule():
    if S:
        S.stop()


def probe(*args, endpoint=None, secret=None, key=None, bucket=BUCKET, prefix="", env=None,
          timeout=120):
    e = dict(os.environ)
    e.update({"S3_ENDPOINT": endpoint or S.endpoint, "S3_BUCKET": bucket,
              "S3_ACCESS_KEY": key or S.access_key, "S3_SECRET_KEY": secret or S.secret_key,
              "S3_PREFIX": prefix})
    e.update(env or {})
    r = subprocess.run([PROBE] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=e, timeout=timeout)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


def requests_of(stderr):
    for line in stderr.splitlines():
        if line.startswith("requests "):
            return int(line.split()[1])
    return None


class S3ClientTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ev-s3probe-")
        self.other = rgw.S3(S.endpoint, S.access_key, S.secret_key)

    def file(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_put_get_head_delete_round_trip(self):
        data = os.urandom(5000) + b"\r\n\x00 end"
        rc, _, err = probe("put", "dir/a b+c.bin", self.file("a", data), prefix="p1/")
        self.assertEqual(rc, 0, err)
        # the independent client sees it under the prefix, byte for byte
        self.assertEqual(self.other.get(BUCKET, "p1/dir/a b+c.bin"), data)
        rc, out, err = probe("get", "dir/a b+c.bin", prefix="p1/")
        self.assertEqual((rc, out), (0, data), err)
        rc, out, err = probe("get", "dir/a b+c.bin", "100", "17", prefix="p1/")
        self.assertEqual((rc, out), (0, data[100:117]), err)
        rc, out, err = probe("getfd", "dir/a b+c.bin", prefix="p1/")
        self.assertEqual((rc, out), (0, data), err)
        rc, out, err = probe("head", "dir/a b+c.bin", prefix="p1/")
        self.assertEqual((rc, out.strip()), (0, str(len(data)).encode()), err)
        rc, _, err = probe("delete", "dir/a b+c.bin", prefix="p1/")
        self.assertEqual(rc, 0, err)
        self.assertIsNone(self.other.get(BUCKET, "p1/dir/a b+c.bin"))
        self.assertEqual(probe("head", "dir/a b+c.bin", prefix="p1/")[0], 3)
        self.assertEqual(probe("get", "dir/a b+c.bin", prefix="p1/")[0], 3)

    def test_empty_object(self):
        rc, _, err = probe("put", "empty", self.file("e", b""))
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.other.get(BUCKET, "empty"), b"")
        self.assertEqual(probe("get", "empty")[:2], (0, b""))

    def test_if_none_match(self):
        path = self.file("x", b"first")
        self.assertEqual(probe("put", "cond", path, "if-none-match")[0], 0)
        rc, _, err = probe("put", "cond", self.file("y", b"second"), "if-none-match")
        self.assertEqual(rc, 2, err)
        self.assertEqual(self.other.get(BUCKET, "cond"), b"first")

    def test_listing_pages_past_1000(self):
        # 1,203 keys put by the harness's client, listed 1000 a page by the engine's
        names = ["many/k%05d" % i for i in range(1203)]
        lock = threading.Lock()
        todo = list(names)

        def worker():
            c = rgw.S3(S.endpoint, S.access_key, S.secret_key)
            while True:
                with lock:
                    if not todo:
                        return
                    k = todo.pop()
                c.put(BUCKET, k, k.encode())
        ts = [threading.Thread(target=worker) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        rc, out, err = probe("list", "many/")
        self.assertEqual(rc, 0, err)
        got = [line.split()[0] for line in out.decode().splitlines()]
        self.assertEqual(got, names)
        self.assertEqual(requests_of(err), 2)   # two pages: continuation followed
        rc, out, err = probe("list", "many/", "100")
        self.assertEqual(len(out.decode().splitlines()), 1203)
        self.assertEqual(requests_of(err), 13)

    def test_multipart_above_the_part_size(self):
        data = os.urandom(64 * 1024 * 5 + 1234)       # 6 parts of 64 KiB, the last short
        env = {"S3_PART_SIZE": str(64 * 1024), "S3_THRESHOLD": str(100 * 1024), "S3_PARALLEL": "3"}
        rc, _, err = probe("put", "big/obj", self.file("big", data), env=env)
        self.assertEqual(rc, 0, err)
        self.assertEqual(requests_of(err), 1 + 6 + 1)    # create, parts, complete
        got = self.other.get(BUCKET, "big/obj")
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest())
        _, h, _ = self.other.request("HEAD", BUCKET, "big/obj")
        self.assertTrue(h.get("etag", "").strip('"').endswith("-6"), h)
        # below the threshold: one PUT
        rc, _, err = probe("put", "big/small", self.file("s", data[:90000]), env=env)
        self.assertEqual((rc, requests_of(err)), (0, 1), err)

    def test_multipart_failure_is_aborted(self):
        # parts below the server's minimum are refused at completion: the upload is
        # aborted, nothing is left (no object, no upload in progress)
        data = os.urandom(3 * 20000)
        env = {"S3_PART_SIZE": "20000", "S3_THRESHOLD": "20000"}
        rc, _, err = probe("put", "small-parts", self.file("sp", data), env=env)
        self.assertEqual(rc, 1)
        self.assertIn("EntityTooSmall", err)
        self.assertIsNone(self.other.get(BUCKET, "small-parts"))
        status, _, body = self.other.request("GET", BUCKET, query={"uploads": ""})
        self.assertEqual(status, 200)
        self.assertNotIn(b"<Key>small-parts</Key>", body)

    def test_wrong_secret_refused_with_the_servers_error(self):
        rc, _, err = probe("check", secret=S.secret_key[:-1] + "Z")
        self.assertEqual(rc, 1)
        self.assertIn("error storage 403 SignatureDoesNotMatch", err)
        self.assertIn("the secret key is wrong", err)
        self.assertNotIn(S.secret_key[:-1], err)
        self.assertEqual(requests_of(err), 1)      # a refusal is not retried

    def test_unknown_key_and_no_such_bucket(self):
        rc, _, err = probe("check", key="NOSUCHKEY0000000")
        self.assertIn("error storage 403 InvalidAccessKeyId", err)
        rc, _, err = probe("check", bucket="no-such-bucket-here")
        self.assertEqual(rc, 1)
        self.assertIn("error storage 404 NoSuchBucket", err)
        self.assertEqual(probe("check")[0], 0)

    def test_unreachable_is_retried_then_reported(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        t0 = time.monotonic()
        rc, _, err = probe("check", endpoint="http://127.0.0.1:%d" % port, env={"S3_RETRIES": "3"})
        self.assertEqual(rc, 1)
        self.assertIn("error refused 0", err)
        self.assertIn("127.0.0.1:%d" % port, err)
        self.assertEqual(requests_of(err), 4)
        self.assertLess(time.monotonic() - t0, 10)

    def test_dropped_connection_is_retried(self):
        # a proxy that drops the first two connections, then passes bytes through
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        up = S.endpoint.split("//")[1].split(":")
        count = {"n": 0}

        def pipe(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            finally:
                for s_ in (a, b):
                    try:
                        s_.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        def serve():
            while True:
                try:
                    c, _ = srv.accept()
                except OSError:
                    return
                count["n"] += 1
                if count["n"] <= 2:
                    c.recv(100)
                    c.close()
                    continue
                u = socket.create_connection((up[0], int(up[1])))
                threading.Thread(target=pipe, args=(c, u), daemon=True).start()
                threading.Thread(target=pipe, args=(u, c), daemon=True).start()
        threading.Thread(target=serve, daemon=True).start()
        try:
            data = os.urandom(3000)
            rc, _, err = probe("put", "via-proxy", self.file("vp", data),
                               endpoint="http://127.0.0.1:%d" % port)
            self.assertEqual(rc, 0, err)
            self.assertEqual(requests_of(err), 3)
            self.assertEqual(self.other.get(BUCKET, "via-proxy"), data)
        finally:
            srv.close()


if __name__ == "__main__":
    unittest.main()
