"""The engine configuration file, emailvault.lua (docs/configuration.md): checked
like a source file (`emailvault check`, FILE:LINE: field: message), found
by --config, $EMAILVAULT_CONFIG or beside the sources folder, reloaded on SIGHUP
(a broken file keeps the last good one), and its event handlers: run as
tasks that may wait on vault.http.request, cut off past their limits, each
failure its own, never piling up, working across reloads and restarts."""
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import unittest

import vault
from fakeimap import FakeImap, message
from httpserver import HttpServer, Response
from vault import Engine, source_file

PASSWORD = "Cfg-test-pw-93"


def lua_str(s):
    return json.dumps(s)


class CheckTest(unittest.TestCase):
    """`emailvault check` on the configuration file, no engine."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ev-cfgcheck-")
        self.sources = os.path.join(self.dir, "sources.d")
        os.makedirs(self.sources)
        self.path = os.path.join(self.dir, "emailvault.lua")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def check(self, text=None, args=None, env=None):
        if text is not None:
            with open(self.path, "w") as f:
                f.write(text)
        return vault.run("check", "--sources", self.sources,
                         *(args if args is not None else ["--config", self.path]), env=env)

    def assertProblem(self, text, line, field, fragment):
        r = self.check(text)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        want = "%s:%d: %s: " % (self.path, line, field)
        hits = [l for l in r.stderr.splitlines() if l.startswith(want) and fragment in l]
        self.assertTrue(hits, "no %r ... %r in:\n%s" % (want, fragment, r.stderr))
        self.assertIn("problem", r.stderr.splitlines()[-1])
        self.assertIn("engine configuration file " + self.path, r.stderr.splitlines()[-1])
        return hits[0]

    def test_valid_file(self):
        r = self.check("return {\n  on = {\n    status = function(ev) end,\n    error = function(ev) end,\n  },\n}\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no source files in", r.stdout)
        self.assertIn("engine configuration %s OK (handlers: status, error)" % self.path, r.stdout)

    def test_the_shipped_example_is_valid(self):
        r = vault.run("check", "--sources", self.sources, "--config",
                      os.path.join(vault.SOURCE_DIR, "sources.d", "emailvault.lua.example"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("OK (handlers: status)", r.stdout)

    def test_problems_name_file_line_and_field(self):
        self.assertProblem('return { on = { status = "log it" } }\n', 1, "on.status",
                           'expected a function(ev), run when a source\'s status changes, got string "log it"')
        self.assertProblem("return {\n  on = {\n    stauts = function() end,\n  },\n}\n", 3, "on.stauts",
                           "unknown event (did you mean 'status'?)")
        self.assertProblem("return {\n  on = {},\n  onn = 1,\n}\n", 3, "onn", "unknown field (did you mean 'on'?)")
        self.assertProblem("return { srve = 1 }\n", 1, "srve", "unknown field (did you mean 'serve'?)")
        self.assertProblem("return { bogus = 1 }\n", 1, "bogus", "unknown field (known fields: on, serve, storage)")
        self.assertProblem("return { storage = 1 }\n", 1, "storage", "expected s3 { ... }, got number 1")
        self.assertProblem("return { on = 5 }\n", 1, "on", "expected a table { status = ..., error = ... }, got number 5")
        self.assertProblem("return { on = { [1] = print } }\n", 1, "on", "unexpected function without a event name")
        self.assertProblem("return 42\n", 2, "file", "must return a table { on = { ... } } (it returned number 42)")
        self.assertProblem("local x = 1\n", 2, "file", "must return a table")
        self.assertProblem("return {\n  on = { status = function() end\n}\n", 4, "syntax error", "expected (to close")
        self.assertProblem("local t = nil\nreturn { on = t.x }\n", 2, "error", "attempt to index")
        self.assertProblem("while true do end\n", 1, "file", "did not finish within 20000000 instructions")
        self.assertProblem("return { on = { status = function() end } } .. 1", 1, "error", "attempt to concatenate")

    def test_secrets_in_the_file_stay_hidden(self):
        r = self.check('local password = "Hunter2-cfg-secret"\nreturn { on = { error = password } }\n')
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, re.escape(self.path) + r":2: on.error: expected a function")
        r2 = self.check('local webhook = secret.env "X" return { on = "Hunter2-cfg-secret2 }\n')
        for out in (r.stdout + r.stderr, r2.stdout + r2.stderr):
            self.assertNotIn("Hunter2-cfg-secret", out)
        self.assertIn("syntax error", r2.stderr)

    def test_where_the_file_is_found(self):
        # --config names a file that must exist
        r = self.check(args=["--config", self.path])
        self.assertEqual(r.returncode, 1)
        self.assertIn("%s:1: file: does not exist (named by --config)" % self.path, r.stderr)
        # $EMAILVAULT_CONFIG, and the default, are optional
        r = self.check(args=[], env={"EMAILVAULT_CONFIG": self.path})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no engine configuration file %s (it is optional)" % self.path, r.stdout)
        with open(self.path, "w") as f:
            f.write("return { on = { status = 1 } }\n")
        r = self.check(args=[], env={"EMAILVAULT_CONFIG": self.path})
        self.assertEqual(r.returncode, 1)
        self.assertIn(self.path + ":1: on.status:", r.stderr)
        # without either: emailvault.lua beside the sources folder, whichever
        # way that was found (--sources, $EMAILVAULT_SOURCES, $XDG_CONFIG_HOME, ~)
        r = self.check(args=[], env={"EMAILVAULT_CONFIG": ""})
        self.assertIn(self.path + ":1: on.status:", r.stderr)
        r = vault.run("check", "--sources", self.sources + "//", env={"EMAILVAULT_CONFIG": ""})
        self.assertIn(self.path + ":1: on.status:", r.stderr)
        r = vault.run("check", env={"EMAILVAULT_CONFIG": "", "EMAILVAULT_SOURCES": self.sources})
        self.assertIn(self.path + ":1: on.status:", r.stderr)
        xdg = os.path.join(self.dir, "xdg")
        os.makedirs(os.path.join(xdg, "emailvault", "sources.d"))
        shutil.copy(self.path, os.path.join(xdg, "emailvault", "emailvault.lua"))
        r = vault.run("check", env={"EMAILVAULT_CONFIG": "", "EMAILVAULT_SOURCES": "", "XDG_CONFIG_HOME": xdg})
        self.assertEqual(r.returncode, 1)
        self.assertIn(os.path.join(xdg, "emailvault", "emailvault.lua") + ":1: on.status:", r.stderr)
        home = os.path.join(self.dir, "home")
        os.makedirs(os.path.join(home, ".config", "emailvault", "sources.d"))
        shutil.copy(self.path, os.path.join(home, ".config", "emailvault", "emailvault.lua"))
        r = vault.run("check", env={"EMAILVAULT_CONFIG": "", "EMAILVAULT_SOURCES": "", "XDG_CONFIG_HOME": "",
                                    "HOME": home})
        self.assertIn(os.path.join(home, ".config", "emailvault", "emailvault.lua") + ":1: on.status:", r.stderr)
        # `help` says where it is looked for
        r = vault.run("help", env={"EMAILVAULT_CONFIG": "", "EMAILVAULT_SOURCES": self.sources})
        self.assertIn("the sources folder: %s)" % self.path, r.stdout + r.stderr)
        # sources are still checked beside it
        with open(os.path.join(self.sources, "bad.lua"), "w") as f:
            f.write("return imap { host = 1 }\n")
        r = self.check(args=["--config", self.path])
        self.assertIn("bad.lua:1: host:", r.stderr)
        self.assertIn(self.path + ":1: on.status:", r.stderr)

    def test_config_file_put_in_sources_d_says_where_it_goes(self):
        shutil.copy(os.path.join(vault.SOURCE_DIR, "sources.d", "emailvault.lua.example"),
                    os.path.join(self.sources, "emailvault.lua"))
        r = self.check(args=[])
        self.assertEqual(r.returncode, 1)
        self.assertIn("the engine configuration file goes beside the sources folder, not in it", r.stderr)


class Webhook:
    """An HTTP receiver: every POST recorded as (path, parsed JSON or text)."""

    def __init__(self):
        self.srv = HttpServer().start()
        self.posts = []
        self.lock = threading.Lock()
        self.srv.route("POST", "/hook*", self.record)

    def record(self, req):
        body = req.body.decode("utf-8", "replace")
        try:
            body = json.loads(body)
        except ValueError:
            pass
        with self.lock:
            self.posts.append((req.path, body, req.time))
        return "ok"

    def url(self, path):
        return self.srv.url(path)

    def bodies(self, path=None):
        with self.lock:
            return [b for p, b, _ in self.posts if path is None or p == path]

    def wait(self, path, count=1, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.bodies(path)) >= count:
                return self.bodies(path)
            time.sleep(0.05)
        raise AssertionError("%s: %d posts, wanted %d: %r" % (path, len(self.bodies(path)), count, self.posts))

    def stop(self):
        self.srv.stop()


# A handler that posts the event as JSON to PATH.
def poster(path):
    return ('function(ev) local r, err = vault.http.request{ method = "POST", url = HOOK .. %s, '
            'headers = { ["Content-Type"] = "application/json" }, body = vault.json.encode(ev), timeout = 20 } '
            'if not r then error(err.message) end end' % lua_str(path))


def config(hook, **handlers):
    parts = ["local HOOK = %s" % lua_str(hook.url("")), "return {", "  on = {"]
    for event, fn in handlers.items():
        parts.append("    %s = %s," % (event, fn))
    parts += ["  },", "}"]
    return "\n".join(parts) + "\n"


class HandlersTestBase(unittest.TestCase):
    def setUp(self):
        self.hook = Webhook()
        self.e = Engine(log_level="debug", env={"no_proxy": "127.0.0.1,localhost"})

    def tearDown(self):
        try:
            rc = self.e.stop()
            self.assertEqual(rc, 0, "engine exit status (a leak fails it under ASan): %s"
                             % getattr(self.e, "stderr", ""))
            text = self.e.log() + json.dumps(self.hook.posts) + (self.e.stdout or "") + (self.e.stderr or "")
            self.assertNotIn(PASSWORD, text)
        finally:
            self.e.cleanup()
            self.hook.stop()

    def failing_source(self, sid="a", **fields):
        # port 1: refused at once; the default retry waits 30 s, so events
        # come when the test asks for them (vault.resume)
        self.e.write_source(sid, source_file(port=1, tls="false", password=PASSWORD, name='"Source A"', **fields))

    def kick(self, sid="a"):
        """One more status change to importing and back to error."""
        self.e.eval("return vault.resume(%s)" % lua_str(sid))


class HandlersTest(HandlersTestBase):
    def test_handlers_run_as_tasks_with_the_event(self):
        self.e.write_config(config(self.hook, status=poster("/hook/status"), error=poster("/hook/error")))
        self.failing_source()
        self.e.start()
        status = self.hook.wait("/hook/status", 2)
        err = self.hook.wait("/hook/error", 1)[0]
        self.assertEqual([(s["status"], s.get("previous")) for s in status[:2]], [("importing", None), ("error", "importing")])
        s = status[1]
        self.assertEqual((s["event"], s["id"], s["name"], s["kind"], s["host"]), ("status", "a", "Source A", "imap", "127.0.0.1"))
        self.assertEqual(s["error"]["kind"], "refused")
        self.assertIn("127.0.0.1:1", s["error"]["message"])
        self.assertEqual((err["event"], err["error"]["kind"], err["error"]["attempt"]), ("error", "refused", 1))
        cfg = self.e.eval("return vault.config()")
        self.assertEqual(cfg["file"], self.e.config)
        self.assertTrue(cfg["loaded"])
        self.assertEqual(cfg["handlers"], ["status", "error"])
        self.assertGreaterEqual(cfg["events"]["runs"], 3)

    def test_a_waiting_handler_is_cut_off_and_eval_answers_meanwhile(self):
        hung = []

        def hang(req):
            hung.append(req)
            deadline = time.time() + 30
            while time.time() < deadline and not self.hook.srv.stopping.is_set():
                time.sleep(0.05)
            return "late"
        self.hook.srv.route("POST", "/slow", hang)
        self.e.write_config(config(self.hook, error=poster("/slow"), status=poster("/hook/status")))
        self.e.start()
        self.e.eval("require('events').LIMITS.seconds = 2 return true")
        self.failing_source()
        t0 = time.time()
        self.e.reload()
        deadline = time.time() + 10
        while not hung and time.time() < deadline:
            time.sleep(0.05)
        self.assertTrue(hung, "the handler's request never arrived")
        # the loop is free while the handler waits: eval answers at once
        for _ in range(5):
            t = time.time()
            self.assertEqual(self.e.eval("return 1 + 1"), 2)
            self.assertLess(time.time() - t, 1.5)
        line = self.e.wait_for_log(r"event handler failed .*event=error", timeout=10)[0]
        self.assertIn("time limit exceeded (2 s, waits included)", line)
        self.assertLess(time.time() - t0, 8)
        self.assertTrue(hung[0].wait_closed(5), "the request was not cancelled with its handler")
        # the other handler was not held up, and the next event runs again
        self.hook.wait("/hook/status", 2)
        self.kick()
        self.e.wait_for_log(r"event handler failed .*event=error", count=2, timeout=15)

    def test_a_busy_handler_is_stopped_and_others_run(self):
        self.e.write_config(config(self.hook, status="function(ev) while true do pcall(function() while true do end end) end end",
                                   error=poster("/hook/error")))
        self.failing_source()
        self.e.start()
        line = self.e.wait_for_log(r"event handler failed .*event=status", timeout=15)[0]
        self.assertIn("instruction budget exceeded", line)
        self.hook.wait("/hook/error", 1)
        self.assertEqual(self.e.eval("return vault.status('a').status"), "error")

    def test_a_failing_handler_is_logged_and_the_others_run(self):
        self.e.write_config(config(self.hook, status='function(ev) error("boom in the handler") end',
                                   error=poster("/hook/error")))
        self.failing_source()
        self.e.start()
        line = self.e.wait_for_log(r"\[a\] event handler failed .*event=status", timeout=15)[0]
        self.assertIn("boom in the handler", line)
        self.hook.wait("/hook/error", 1)
        self.kick()
        self.e.wait_for_log(r"event handler failed .*event=status", count=4, timeout=15)
        self.hook.wait("/hook/error", 2)
        self.assertEqual(self.e.eval("return vault.config().events.failed"), 4)

    def test_handlers_cannot_reach_the_engine_tables(self):
        self.e.write_config(config(self.hook, status="function(ev) vault.status = nil vault.log.info = nil "
                                   "vault.http.request = nil end"))
        self.failing_source()
        self.e.start()
        self.e.wait_for_log(r"\[a\] status .*to=error")
        time.sleep(0.5)
        self.assertEqual(self.e.eval("return vault.status('a').id"), "a")
        self.assertEqual(self.e.eval("return type(vault.http.request)"), "function")
        self.assertEqual(self.e.eval("vault.log.info('still here') return true"), True)
        self.assertEqual(self.e.eval("return vault.config().events.failed"), 0)


class PileUpTest(HandlersTestBase):
    def test_a_flapping_source_does_not_pile_up_handlers(self):
        srv = FakeImap({"INBOX": [message(1)]})
        srv.examine_no = lambda folder: "[SERVERBUG] cannot open it now"
        try:
            # every 0.1 s: importing (logged in), then error (EXAMINE refused)
            self.e.write_config(config(self.hook, status="function(ev) vault.sleep(1) end"))
            self.e.write_source("f", source_file(port=srv.port, username=srv.user, password=srv.password, tls="false",
                                                 on_error="function() return 0.1 end"))
            self.e.start()
            t0 = time.time()
            time.sleep(5)
            flips = len(self.e.log_lines(r"\[f\] status .*to=error"))
            v = self.e.eval("return { c = vault.config(), tasks = vault.task.count() }")
            elapsed = time.time() - t0
            ev = v["c"]["events"]
            self.assertGreater(flips, 10, "the source did not flap")
            self.assertLessEqual(ev["runs"], elapsed / 1 + 2)     # one at a time, a second each
            self.assertGreater(ev["replaced"], flips - elapsed - 5)
            self.assertLessEqual(ev["running"], 1)
            self.assertLessEqual(ev["pending"], 1)
            self.assertLess(v["tasks"], 8)
        finally:
            srv.close()


class ReloadTest(HandlersTestBase):
    def test_broken_file_keeps_the_last_good_one_then_a_fix_applies(self):
        self.e.write_config(config(self.hook, status=poster("/hook/v1")))
        self.failing_source()
        self.e.start()
        self.hook.wait("/hook/v1", 2)
        self.e.write_config("return {\n  on = {\n    status = 42,\n  },\n}\n")
        line = self.e.reload()
        self.assertIn("config=failed", line)
        prob = self.e.wait_for_log(r"engine configuration rejected")[0]
        self.assertIn("%s:3: on.status: expected a function(ev)" % self.e.config, prob)
        self.e.wait_for_log(r"keeping the last good engine configuration")
        cfg = self.e.eval("return vault.config()")
        self.assertTrue(cfg["loaded"])
        self.assertTrue(cfg["config_error"].startswith(self.e.config + ":3: on.status:"), cfg)
        # (events of one source coalesce while its handler runs: count at least one more)
        self.kick()
        self.hook.wait("/hook/v1", 3)           # the old handlers still run
        self.e.write_config(config(self.hook, status=poster("/hook/v2")))
        self.assertIn("config=loaded", self.e.reload())
        self.assertNotIn("config_error", self.e.eval("return vault.config()"))
        time.sleep(0.5)
        n1 = len(self.hook.bodies("/hook/v1"))
        self.kick()
        n2 = len(self.hook.wait("/hook/v2", 1))
        # an unchanged file is not reloaded; handlers carry on
        self.assertIn("config=unchanged", self.e.reload())
        time.sleep(0.5)
        n2 = len(self.hook.bodies("/hook/v2"))
        self.kick()
        self.hook.wait("/hook/v2", n2 + 1)
        self.assertEqual(len(self.hook.bodies("/hook/v1")), n1)
        # a removed file takes its handlers away
        os.unlink(self.e.config)
        self.assertIn("config=none", self.e.reload())
        self.e.wait_for_log(r"engine configuration removed")
        time.sleep(0.5)
        n2 = len(self.hook.bodies("/hook/v2"))
        n = len(self.e.log_lines(r"\[a\] status .*to=error"))
        self.kick()
        self.e.wait_for_log(r"\[a\] status .*to=error", count=n + 1)
        time.sleep(0.5)
        self.assertEqual(len(self.hook.bodies("/hook/v2")), n2)

    def test_an_unchanged_file_keeps_its_handlers_and_their_state(self):
        # a handler's upvalues are its state (the alerts example keeps what
        # it last said in them): a reload with the file unchanged keeps them
        text = ("local HOOK = %s\nlocal n = 0\nreturn { on = { status = function(ev) n = n + 1 "
                "assert(vault.http.request{ method = 'POST', url = HOOK .. '/hook/n', body = vault.json.encode{ n = n } }) "
                "end } }\n" % lua_str(self.hook.url("")))
        self.e.write_config(text)
        self.failing_source()
        self.e.start()
        self.hook.wait("/hook/n", 2)
        self.e.wait_for_log(r"\[a\] status .*to=error")
        self.assertIn("config=unchanged", self.e.reload())
        self.e.write_config(text)       # rewritten, the same text
        self.assertIn("config=unchanged", self.e.reload())
        time.sleep(0.5)
        before = [b["n"] for b in self.hook.bodies("/hook/n")]
        self.kick()
        after = [b["n"] for b in self.hook.wait("/hook/n", len(before) + 1)]
        self.assertEqual(after, list(range(1, len(after) + 1)), "the counter started again")

    def test_handlers_work_after_a_restart(self):
        self.e.write_config(config(self.hook, error=poster("/hook/error")))
        self.failing_source()
        self.e.start()
        self.hook.wait("/hook/error", 1)
        self.assertEqual(self.e.stop(), 0)
        self.e.start()
        self.hook.wait("/hook/error", 2)

    def test_config_option_names_the_file(self):
        other = os.path.join(self.e.tmp, "other.lua")
        self.e.write_config(config(self.hook, error=poster("/hook/default")))
        self.e.write_config(config(self.hook, error=poster("/hook/other")), path=other)
        self.e.extra_args = ["--config", other]
        self.failing_source()
        self.e.start()
        self.hook.wait("/hook/other", 1)
        self.assertEqual(self.hook.bodies("/hook/default"), [])
        self.assertEqual(self.e.eval("return vault.config().file"), other)

    def test_a_missing_config_option_file_is_reported_and_the_engine_runs(self):
        missing = os.path.join(self.e.tmp, "missing.lua")
        self.e.extra_args = ["--config", missing]
        self.failing_source()
        self.e.start()
        self.e.wait_for_log(r"engine configuration rejected .*missing\.lua:1: file: does not exist")
        cfg = self.e.eval("return vault.config()")
        self.assertFalse(cfg["loaded"])
        self.assertIn("does not exist", cfg["config_error"])
        self.assertEqual(self.e.eval("return vault.status('a').id"), "a")


if __name__ == "__main__":
    unittest.main()
