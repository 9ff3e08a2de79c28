"""The exact bytes of --json output (eval, status with and without an
engine): sorted keys, compact, "/" unescaped, integers exact, secrets as
"***". Protocol bodies go through lua-cjson, which does none of that; this
output must not change with it (tests/unit/test_lua_json.c pins the
encoder itself)."""
import json
import re
import unittest

import vault
from vault import Engine, source_file


def canonical(text):
    """TEXT re-encoded the way the engine must write it: sorted keys, compact,
    non-ASCII as is; floats keep the engine's digits (%.17g, not Python's)."""
    v = json.loads(text, parse_float=lambda f: "\0float:" + f + "\0")
    out = json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return re.sub(r'"\\u0000float:([^"\\]*)\\u0000"', r"\1", out)


class JsonOutputTest(unittest.TestCase):
    def test_eval_and_status_json_bytes(self):
        e = Engine(log_level="info")
        try:
            # refused at once: the source is in error with a message naming host:port
            e.write_source("zeta", source_file(port=1, tls="false", name='"Zeta / Z"'))
            e.write_source("alpha", source_file(port=1, tls="false"))
            e.start()
            e.wait_for_log(r"\[zeta\] source failed")
            e.wait_for_log(r"\[alpha\] source failed")
            r = vault.run("eval", "--data", e.data, "--json", "return { b = 1, a = { 1, 2, {} }, s = 'a/b\\1\\t\\u{e9}', i = math.maxinteger, "
                       "w = 3.0, f = 0.1, n = 0/0, p = require('secret').literal('pw-json-1') }, 'x/y'")
            self.assertEqual(r.stdout.rstrip("\n"),
                             '[{"a":[1,2,[]],"b":1,"f":0.10000000000000001,"i":9223372036854775807,'
                             '"n":null,"p":"***","s":"a/b\\u0001\\t\u00e9","w":3},"x/y"]')
            for out in (vault.run("status", "--data", e.data, "--json").stdout.strip(),
                        vault.run("eval", "--data", e.data, "--json", "return vault.sources()").stdout.strip()):
                self.assertEqual(out, canonical(out))
                self.assertNotIn("\\/", out)
                recs = json.loads(out)
                self.assertEqual([s["id"] for s in recs], ["alpha", "zeta"])
                self.assertEqual(recs[1]["name"], "Zeta / Z")
                self.assertEqual(recs[1]["error"]["kind"], "refused")
                self.assertIsInstance(recs[1]["error"]["at"], (int, float))
            e.stop()
            out = vault.run("status", "--data", e.data, "--json").stdout.strip()   # from archive.db
            self.assertEqual(out, canonical(out))
            self.assertEqual(json.loads(out)[1]["error"]["kind"], "refused")
        finally:
            e.cleanup()


if __name__ == "__main__":
    unittest.main()
