"""The S3 test server itself (tests/harness/rgw.py): a one-node Ceph cluster with
radosgw starts on 127.0.0.1, serves signed requests, refuses a wrong secret, and is
gone after stop."""
import os
import unittest

import rgw

S = None


def setUpModule():
    global S
    if rgw.available():
        raise unittest.SkipTest(rgw.available())
    S = rgw.Rgw().start()
    print("rgw started in %.1f s" % S.start_seconds)


def tearDownModule():
    if S:
        S.stop()


class RgwHarnessTest(unittest.TestCase):
    def test_signed_round_trip_and_paging(self):
        c = rgw.S3(S.endpoint, S.access_key, S.secret_key)
        c.create_bucket("harness-paging")
        for i in range(5):
            c.put("harness-paging", "k/%d" % i, b"v%d" % i)
        self.assertEqual(c.get("harness-paging", "k/3"), b"v3")
        self.assertIsNone(c.get("harness-paging", "k/9"))
        self.assertEqual(c.keys("harness-paging", "k/"), ["k/%d" % i for i in range(5)])

    def test_wrong_secret_refused(self):
        c = rgw.S3(S.endpoint, S.access_key, S.secret_key[:-1] + "x")
        status, _, body = c.request("GET", "harness-nothing")
        self.assertEqual(status, 403)
        self.assertIn(b"SignatureDoesNotMatch", body)

    def test_second_user_is_separate(self):
        ak, sk = S.user("other")
        c = rgw.S3(S.endpoint, ak, sk)
        c.create_bucket("harness-other")
        mine = rgw.S3(S.endpoint, S.access_key, S.secret_key)
        self.assertEqual(mine.request("GET", "harness-other", query={"list-type": "2"})[0], 403)

    def test_stop_leaves_nothing(self):
        s = rgw.Rgw().start()
        d, pids = s.dir, [p.pid for p in s.procs]
        s.stop()
        self.assertFalse(os.path.exists(d))
        for pid in pids:
            self.assertFalse(os.path.exists("/proc/%d" % pid) and
                             open("/proc/%d/stat" % pid).read().split()[2] != "Z")


if __name__ == "__main__":
    unittest.main()
