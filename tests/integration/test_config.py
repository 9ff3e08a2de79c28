"""Source file validation, through `emailvault check` (no network)."""
import os
import re
import stat
import tempfile
import shutil
import time
import unittest

import vault
from vault import source_file


class CheckTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ev-check-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, name, text, mode=0o600):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def check(self, env=None):
        return vault.run("check", "--sources", self.dir, env=env)

    def problems(self, env=None):
        r = self.check(env)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        return [l for l in r.stderr.splitlines() if re.match(r"^.+:\d+: ", l)]

    def assertProblem(self, text, field, fragment, line=None, env=None, name="s.lua"):
        path = self.write(name, text)
        probs = self.problems(env)
        want = re.escape(path) + r":(\d+): " + re.escape(field) + ": .*" + re.escape(fragment)
        hits = [p for p in probs if re.search(want, p)]
        self.assertTrue(hits, "no problem matching %r in:\n%s" % (want, "\n".join(probs)))
        if line is not None:
            self.assertEqual(int(re.search(want, hits[0]).group(1)), line, hits[0])
        return hits[0]

    # -- good files ---------------------------------------------------------
    def test_valid_file_passes_with_summary(self):
        self.write("work.lua", source_file(port=993, name='"Work"'))
        self.write("home.lua", source_file(port=143, tls="false"))
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2 sources OK: home, work", r.stdout)

    def test_example_file_is_valid_once_copied(self):
        shutil.copy(os.path.join(vault.SOURCE_DIR, "sources.d", "example.lua.example"),
                    os.path.join(self.dir, "example.lua"))
        r = self.check(env={"WORK_IMAP_PASSWORD": "x-password"})
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_example_is_not_loaded_under_its_shipped_name(self):
        r = vault.run("check", "--sources", os.path.join(vault.SOURCE_DIR, "sources.d"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no source files", r.stdout)

    def test_missing_folder(self):
        r = vault.run("check", "--sources", os.path.join(self.dir, "nope"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not exist", r.stderr)

    # -- each kind of problem ----------------------------------------------
    def test_syntax_error(self):
        self.assertProblem('return imap {\n  host = "x"\n  username = "u",\n}\n',
                           "syntax error", "'}' expected", line=3)

    def test_nesting_too_deep_for_the_parser(self):
        # Found by fuzz_sources: the parser's own error (its C stack spent)
        # has no position of the file but a traceback, whose first
        # "FILE:LINE:" (lua/loader.lua's) was reported as the file's line.
        hit = self.assertProblem("return " + "(" * 300 + "1" + ")" * 300 + "\n",
                                 "syntax error", "nested too deeply", line=1)
        self.assertNotIn("traceback", hit)
        self.assertNotIn("loader", hit)

    def test_runtime_error(self):
        self.assertProblem('local t = nil\nreturn t.x\n', "error", "attempt to index", line=2)

    def test_error_raised_by_the_file(self):
        self.assertProblem('\n\nerror("no password here")\n', "error", "no password here", line=3)

    def test_error_naming_another_file_keeps_its_text(self):
        # Found by fuzz_sources: a message that only looks like a position
        # ("other.lua:7: ...") was reported as line 7 of a two-line file.
        hit = self.assertProblem('local x = 1\nerror("other.lua:7: boom", 0)\n', "error",
                                 "other.lua:7: boom", line=1)
        self.assertNotRegex(hit, r"s\.lua:7:")

    def test_endless_loop_is_stopped(self):
        self.assertProblem('local n = 0\nwhile true do n = n + 1 end\n', "file", "endless loop")

    def test_endless_loop_inside_a_coroutine_is_stopped(self):
        self.assertProblem('local co = coroutine.wrap(function() while true do end end)\nco()\n',
                           "file", "endless loop")

    def test_file_must_return_imap(self):
        self.assertProblem('return { host = "x" }\n', "file", "must return imap")
        self.assertProblem('local x = 1\n', "file", "must return imap")

    def test_unknown_field_suggests_nearest(self):
        self.assertProblem(source_file(extra='  hots = "x",'), "hots", "did you mean 'host'", line=6)
        self.assertProblem(source_file(extra='  allow_insecure_certs = true,'), "allow_insecure_certs",
                           "did you mean 'allow_insecure_cert'")
        self.assertProblem(source_file(extra='  flavour = 1,'), "flavour", "known fields")

    def test_wrong_types(self):
        self.assertProblem(source_file(extra='  name = 42,'), "name", "expected a display label")
        self.assertProblem(source_file(port='"993"'), "port", "expected an integer", line=3)
        self.assertProblem(source_file(port='9.5'), "port", "expected an integer")
        self.assertProblem(source_file(tls='"yes"'), "tls", 'expected true (implicit TLS), "starttls" or false')
        self.assertProblem(source_file(allow_insecure_cert='"no"'), "allow_insecure_cert", "expected true or false")
        self.assertProblem(source_file(folders='"INBOX"'), "folders", "expected a table")
        self.assertProblem(source_file(folders='{ only = {"x"} }'), "folders", "unknown key only")
        self.assertProblem(source_file(folders='{ exclude = { 1 } }'), "folders", "exclude[1]")
        self.assertProblem(source_file(filter='true'), "filter", "expected a function")
        self.assertProblem(source_file(on_error='30'), "on_error", "expected a function")
        self.assertProblem(source_file(poll='1'), "poll", "at least 10 seconds")
        self.assertProblem(source_file(password=None, extra='  password = 12345,'), "password", "expected a string")
        self.assertProblem(source_file(host='imap.example.com/'), "host", "bare host name")

    def test_missing_required_fields(self):
        for field in ("host", "username", "password"):
            text = 'return imap {\n  host = "h",\n  username = "u",\n  password = "p",\n}\n'
            text = re.sub(r"\n  %s = [^\n]*" % field, "", text)
            self.assertProblem(text, field, "missing", line=1)

    def test_port_out_of_range(self):
        self.assertProblem(source_file(port=70000), "port", "out of range", line=3)
        self.assertProblem(source_file(port=0), "port", "out of range")

    def test_bad_file_name(self):
        self.write("bad name.lua", source_file())
        probs = self.problems()
        self.assertTrue(any(": id: " in p for p in probs), probs)

    def test_every_problem_of_a_file_is_listed(self):
        self.write("s.lua", 'return imap {\n  host = 1,\n  port = 0,\n  username = "u",\n  password = "p",\n}\n')
        probs = self.problems()
        self.assertEqual(len(probs), 2, probs)
        self.assertRegex(probs[0], r":2: host: ")
        self.assertRegex(probs[1], r":3: port: ")

    def test_one_bad_file_does_not_hide_good_ones(self):
        self.write("good.lua", source_file())
        self.write("bad.lua", "return imap {")
        r = self.check()
        self.assertEqual(r.returncode, 1)
        self.assertIn("1 problem in 1 of 2 source files", r.stderr)

    def test_each_file_has_its_own_environment(self):
        self.write("a.lua", "shared = 'leak'\n" + source_file())
        self.write("b.lua", "assert(shared == nil, 'saw another file global')\n" + source_file())
        self.assertEqual(self.check().returncode, 0, self.check().stderr)

    def test_no_dangerous_libraries(self):
        self.assertProblem('os.execute("true")\n', "error", "attempt to call a nil value")
        self.assertProblem('io.open("/etc/passwd")\n', "error", "attempt to index a nil value")

    # -- secrets -------------------------------------------------------------
    def test_secret_env(self):
        self.write("s.lua", source_file(password='secret.env "EV_TEST_PW"'))
        self.assertEqual(self.check(env={"EV_TEST_PW": "from-env"}).returncode, 0)
        env = dict(os.environ)
        env.pop("EV_TEST_PW", None)
        hit = self.assertProblem(source_file(password='secret.env "EV_TEST_PW_UNSET"'), "password",
                                 "the environment variable named in secret.env is not set", line=5)
        self.assertNotIn("EV_TEST_PW_UNSET", hit)   # it might be a password typed there
        self.assertProblem(source_file(password='secret.env "EV_TEST_PW_EMPTY"'), "password",
                           "is empty", env={"EV_TEST_PW_EMPTY": ""})

    def test_secret_file(self):
        pw = self.write("pw.txt", "from-file\n")
        self.write("s.lua", source_file(password='secret.file "%s"' % pw))
        self.assertEqual(self.check().returncode, 0, self.check().stderr)
        # relative paths are read from the source file's folder
        self.write("s.lua", source_file(password='secret.file "pw.txt"'))
        self.assertEqual(self.check().returncode, 0, self.check().stderr)
        self.assertProblem(source_file(password='secret.file "missing.txt"'), "password",
                           "cannot read secret file")
        self.write("empty.txt", "")
        self.assertProblem(source_file(password='secret.file "empty.txt"'), "password", "is empty")

    def test_secret_file_readable_by_others_is_warned(self):
        self.write("pw.txt", "from-file\n", mode=0o644)
        self.write("s.lua", source_file(password='secret.file "pw.txt"'))
        r = self.check()
        self.assertEqual(r.returncode, 0)
        self.assertIn("readable by other users", r.stderr)

    def test_secret_command(self):
        self.write("s.lua", source_file(password='secret.command { "printf", "from-command" }'))
        self.assertEqual(self.check().returncode, 0, self.check().stderr)
        self.assertProblem(source_file(password='secret.command { "sh", "-c", "echo nope >&2; exit 3" }'),
                           "password", "exited with status 3: nope")
        hit = self.assertProblem(source_file(password='secret.command { "/nonexistent/pass" }'),
                                 "password", "cannot run the program: No such file")
        self.assertNotIn("/nonexistent/pass", hit)
        self.assertProblem(source_file(password='secret.command { "true" }'), "password", "printed nothing")

    def test_secret_misuse(self):
        self.assertProblem(source_file(password='secret.env(42)'), "error", "secret.env expects")
        self.assertProblem(source_file(password='secret.command(7)'), "error", "secret.command expects")

    def test_password_never_printed(self):
        self.write("s.lua", source_file(password="hunter2-very-secret", port=0))
        r = self.check()
        self.assertEqual(r.returncode, 1)
        self.assertNotIn("hunter2-very-secret", r.stdout + r.stderr)

    # -- a file cannot freeze the engine (issue 8, item 2) -------------------
    def check_quickly(self, seconds=20):
        t0 = time.time()
        r = vault.run("check", "--sources", self.dir, timeout=seconds + 10)
        self.assertLess(time.time() - t0, seconds, r.stderr)
        return r

    def test_runaway_files_are_stopped_however_they_loop(self):
        bodies = {
            "pcall": "while true do pcall(function() while true do end end) end",
            "xpcall": "while true do xpcall(function() while true do end end, "
                      "function() while true do end end) end",
            "wrap": "while true do pcall(coroutine.wrap(function() while true do end end)) end",
            "resume": "while true do coroutine.resume(coroutine.create(function() "
                      "while true do pcall(error) end end)) end",
            "error_object": "local e = setmetatable({}, { __tostring = function() while true do end end })\n"
                            "while true do pcall(error, e) end",
            "find": "string.find(('a'):rep(3000), ('a-'):rep(8) .. 'b')",
            "match": "local s = ('a'):rep(3000) return s:match(('a*'):rep(8) .. 'b')",
            "gsub": "return (('a'):rep(3000)):gsub(('a-'):rep(8) .. 'b', '')",
            "rep": "while true do pcall(string.rep, '', 1e15) local t = {} table.move(t, 1, 1e12, 1) end",
        }
        for name, body in bodies.items():
            self.write(name + ".lua", body + "\n")
        # Each file is stopped by its instruction count or, on a slow (or
        # sanitizer) build, by its 5 s wall-clock limit at the latest.
        r = self.check_quickly(seconds=5 * len(bodies) + 15)
        self.assertEqual(r.returncode, 1)
        for name in bodies:
            self.assertRegex(r.stderr, re.escape(os.path.join(self.dir, name + ".lua")) +
                             r":\d+: file: did not finish within", name)

    def test_values_a_file_returns_run_no_code_outside_its_budget(self):
        loop = "function() while true do end end"
        # Metamethods the validation would call: it reads raw, under the budget.
        self.write("pairs.lua", "return imap(setmetatable({ host = 'h', username = 'u', password = 'p' },\n"
                   "  { __pairs = %s, __index = %s }))\n" % (loop, loop))
        self.write("index.lua", "return imap(setmetatable({ host = 'h', username = 'u' }, { __index = %s }))\n" % loop)
        self.write("tostr.lua", source_file(name="setmetatable({}, { __tostring = %s, __name = 'x' })" % loop))
        self.write("folders.lua", source_file(folders="{ include = setmetatable({}, { __pairs = %s }), "
                                              "[setmetatable({}, { __tostring = %s })] = 1 }" % (loop, loop)))
        # A finalizer runs with no hook at all, whenever the collector gets to it.
        self.write("gc.lua", "local keep = setmetatable({}, { __gc = %s })\n" % loop + source_file())
        r = self.check_quickly()
        self.assertEqual(r.returncode, 1)
        err = r.stderr
        self.assertNotIn("pairs.lua", err)               # read raw: a good file
        self.assertRegex(err, r"index\.lua:1: password: missing")
        self.assertRegex(err, r"tostr\.lua:\d+: name: expected a display label \(string\), got table")
        self.assertRegex(err, r"folders\.lua:\d+: folders: unknown key a table")
        self.assertRegex(err, r"gc\.lua:1: error: setmetatable: a __gc metamethod is not allowed")

    # -- sources are isolated from each other (issue 8, item 5) --------------
    def test_a_file_reaches_no_table_of_the_engine(self):
        self.write("probe.lua", """
local function refused(what, v) if type(v) == "table" then error("reached " .. what, 0) end end
refused("the string metatable", getmetatable(""))
refused("the string library", rawget(getmetatable("") or {}, "__index"))
refused("string.dump", ("").dump)
local s = secret.env "X"
refused("the secret metatable", getmetatable(s))
refused("the secret metatable", s.__index)
refused("a secret's fields", s.kind)
refused("the metatable of imap{}", getmetatable(imap { host = "h" }))
-- the thread the file runs on is not the file's to resume or close
local main = coroutine.running()
assert(not pcall(coroutine.resume, main) and not pcall(coroutine.close, main))
local ok, err = pcall(coroutine.close, main)
assert(err:find("not a coroutine of this source file"), err)
-- its own coroutines are
local co = coroutine.create(function(a) return a + 1 end)
assert(select(2, coroutine.resume(co, 1)) == 2 and coroutine.close(co))
assert(coroutine.wrap(function() return 3 end)() == 3)
assert(math.randomseed == nil and string.dump == nil)
""" + source_file())
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_a_file_cannot_read_another_files_password(self):
        # a.lua is loaded first and tries to plant code in what the engine
        # uses to read b.lua; its error message would then carry b's text.
        self.write("a.lua", """
local mt = getmetatable("")
if type(mt) == "table" then
  local lib = mt.__index
  local find, wanted = lib.find, "Sup" .. "3rS3cret"
  for _, f in ipairs { "gmatch", "match", "gsub", "sub", "lower" } do
    local orig = lib[f]
    lib[f] = function(s, ...)
      if type(s) == "string" and find(s, wanted, 1, true) then error("STOLEN " .. s, 0) end
      return orig(s, ...)
    end
  end
end
string.gmatch = function() error("STOLEN") end   -- its own copy: harmless
local s = secret.env "X"
if type(s.__index) == "table" then s.__index.__tostring = function() error("STOLEN secret", 0) end end
""" + source_file())
        self.write("b.lua", source_file(password="Sup3rS3cretWorkPw"))
        r = self.check()
        self.assertNotIn("Sup3rS3cretWorkPw", r.stdout + r.stderr)
        self.assertNotIn("STOLEN", r.stdout + r.stderr)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2 sources OK: a, b", r.stdout)

    # -- a typo does not print the password (issue 8, item 6) ----------------
    def test_password_never_in_a_syntax_or_runtime_error(self):
        pw = "Hunter2-Very-Secret"
        head = 'return imap {\n  host = "h",\n  username = "u",\n'
        shapes = {
            "unclosed quote": (head + '  password = "%s,\n}\n' % pw, "syntax error", 4),
            "unclosed single quote": (head + "  password = '%s\n}\n" % pw, "syntax error", 4),
            "unclosed long string": (head + '  password = [[%s,\n}\n' % pw, "syntax error", None),
            "long string then junk": (head + '  password = [==[%s]==] x,\n}\n' % pw, "syntax error", 4),
            "bad escape": (head + '  password = "Hunter2\\q-Very-Secret",\n}\n', "syntax error", 4),
            "bad decimal escape": (head + '  password = "Hunter2\\400Very",\n}\n', "syntax error", 4),
            "token after": (head + '  password = "%s" "x",\n}\n' % pw, "syntax error", 4),
            "no comma": (head + '  password = "%s"\n  tls = "%s"\n}\n' % (pw, pw), "syntax error", 5),
            "secret.env unclosed": (head + '  password = secret.env "%s,\n}\n' % pw, "syntax error", 4),
            "secret.env then junk": (head + '  password = secret.env("%s") +,\n}\n' % pw, "syntax error", 4),
            "arithmetic": (head + '  password = "%s" + 1,\n}\n' % pw, "error", 4),
            "call": (head + '  password = ("%s")(),\n}\n' % pw, "error", 4),
            "bare words": (head + '  password = %s,\n}\n' % pw, "error", 4),
            "a number": (head + '  password = 4815162342,\n}\n', "password", 4),
            "secret.env": (head + '  password = secret.env "%s",\n}\n' % pw, "password", 4),
            "secret.file": (head + '  password = secret.file "%s",\n}\n' % pw, "password", 4),
            "secret.command": (head + '  password = secret.command { "%s" },\n}\n' % pw, "password", 4),
            "secret.command exit": (head + '  password = secret.command { "sh", "-c", "exit 4", "%s" },\n}\n' % pw,
                                    "password", 4),
        }
        for name, (text, field, line) in shapes.items():
            path = self.write("s.lua", text)
            r = self.check(env={pw: ""})
            out = r.stdout + r.stderr
            self.assertEqual(r.returncode, 1, name)
            for piece in (pw, "Hunter2", "Very-Secret", "4815162342"):
                self.assertNotIn(piece, out, "%s: %s" % (name, out))
            m = re.search(re.escape(path) + r":(\d+): " + re.escape(field) + ": ", out)
            self.assertTrue(m, "%s: %s" % (name, out))
            if line is not None:
                self.assertEqual(int(m.group(1)), line, "%s: %s" % (name, out))


if __name__ == "__main__":
    unittest.main(verbosity=2)
