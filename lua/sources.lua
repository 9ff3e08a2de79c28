-- Source files: the schema of imap{...}, loading each file in its own
-- environment under a budget, secrets, and validation with messages of the
-- form "FILE:LINE: field: message".
--
-- Whatever the file returns is its own: tables with metatables, functions.
-- It is read with raw access, inside the file's budget, and turned into a
-- definition made of the engine's own values (strings, numbers, booleans,
-- fresh tables, the hooks, secrets made by secret.*).

local core = require "vault.core"
local vm = require "vault.vm"
local sandbox = require "vault.sandbox"
local secret = require "secret"
local redact = require "redact"
local oauth2 = require "oauth2"

local M = {}

M.FILE_BUDGET = 20000000     -- instructions a source file may run
M.FILE_SECONDS = 5           -- and seconds
M.FILE_MAX_BYTES = 1 << 20
M.CONNECTIONS_MAX = 16       -- IMAP connections one source may use at once

-- The schema. `check` returns the normalized value or nil, message.
local function is_integer(v) return math.type(v) == "integer" or (type(v) == "number" and v == math.floor(v)) end

-- A value in a message. Never a metamethod: __tostring, __name and the
-- like are the file's code.
local function type_name(v)
  if secret.is(v) then return "secret" end
  local t = type(v)
  if t == "string" then return string.format("string %q", #v > 40 and v:sub(1, 40) .. "..." or v) end
  if t == "number" then return "number " .. string.format(math.type(v) == "integer" and "%d" or "%.14g", v) end
  return t == "nil" and "nothing" or t
end

local function key_name(k)
  if type(k) == "string" or type(k) == "number" then return type_name(k) end
  return "a " .. type(k)
end

local function expect_string(what)
  return function(v)
    if type(v) ~= "string" then return nil, "expected " .. what .. ", got " .. type_name(v) end
    if v == "" then return nil, "must not be empty" end
    return v
  end
end

local function check_patterns(v, field)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then
    return nil, "expected a list of folder patterns, got " .. type_name(v)
  end
  local out = {}
  for k, p in next, v do
    if math.type(k) ~= "integer" then
      return nil, "expected a list of folder patterns, found key " .. key_name(k)
    end
    if type(p) ~= "string" or p == "" then
      return nil, string.format("%s[%d]: expected a folder name or pattern (string), got %s",
        field, k, type_name(p))
    end
    out[k] = p
  end
  return out
end

M.fields = {
  name = { doc = "display label", check = expect_string("a display label (string)") },
  host = { required = true, check = function(v)
    local s, err = expect_string("a host name (string)")(v)
    if not s then return nil, err end
    if s:find("[%s/]") then return nil, "expected a bare host name such as imap.example.com, got " .. type_name(v) end
    return s
  end },
  port = { check = function(v)
    if type(v) ~= "number" or not is_integer(v) then return nil, "expected an integer, got " .. type_name(v) end
    if v < 1 or v > 65535 then return nil, "port " .. type_name(math.tointeger(v) or v):sub(8) .. " is out of range (1-65535)" end
    return math.tointeger(v)
  end },
  username = { required = true, check = expect_string("a user name (string)") },
  password = { required = true, check = function(v)
    if type(v) == "string" then
      if v == "" then return nil, "must not be empty" end
      return secret.literal(v)
    end
    if secret.is(v) or oauth2.is(v) then return v end
    -- Not even the wrong value is shown: it may be the password.
    return nil, 'expected a string, secret.env "VAR", secret.file "path", secret.command{...} or ' ..
      "oauth2{...}, got a " .. type(v)
  end },
  tls = { check = function(v)
    if v == true or v == false or v == "starttls" then return v end
    return nil, 'expected true (implicit TLS), "starttls" or false (plaintext), got ' .. type_name(v)
  end },
  allow_insecure_cert = { check = function(v)
    if type(v) ~= "boolean" then return nil, "expected true or false, got " .. type_name(v) end
    return v
  end },
  ca_file = { check = expect_string("the path of a CA certificate file (PEM)") },
  folders = { check = function(v)
    if type(v) ~= "table" then
      return nil, "expected a table { include = {...}, exclude = {...} }, got " .. type_name(v)
    end
    local out = {}
    for k, list in next, v do
      if k ~= "include" and k ~= "exclude" then
        return nil, "unknown key " .. (type(k) == "string" and k or key_name(k)) .. " (expected include or exclude)"
      end
      local pats, err = check_patterns(list, k)
      if not pats then return nil, k .. ": " .. err end
      out[k] = pats
    end
    return out
  end },
  filter = { check = function(v)
    if type(v) ~= "function" then return nil, "expected a function(msg) returning true or false, got " .. type_name(v) end
    return v
  end },
  on_error = { check = function(v)
    if type(v) ~= "function" then return nil, "expected a function(err, attempt) returning seconds or nil, got " .. type_name(v) end
    return v
  end },
  poll = { check = function(v)
    if type(v) ~= "number" or v ~= v then return nil, "expected seconds between polls (number), got " .. type_name(v) end
    if v < 10 then return nil, "must be at least 10 seconds" end
    return v
  end },
  fetch_batch = { check = function(v)
    if type(v) ~= "number" or not is_integer(v) or v < 1 or v > 5000 then
      return nil, "expected an integer from 1 to 5000, got " .. type_name(v)
    end
    return math.tointeger(v)
  end },
  fetch_batch_bytes = { check = function(v)
    if type(v) ~= "number" or not is_integer(v) or v < 65536 or v > 1 << 30 then
      return nil, "expected bytes from 65536 (64 KiB) to 1073741824 (1 GiB), got " .. type_name(v)
    end
    return math.tointeger(v)
  end },
  connections = { check = function(v)
    if type(v) ~= "number" or not is_integer(v) or v < 1 or v > M.CONNECTIONS_MAX then
      return nil, "expected an integer from 1 to " .. M.CONNECTIONS_MAX .. " (IMAP connections at once), got " ..
        type_name(v)
    end
    return math.tointeger(v)
  end },
  pipeline = { check = function(v)
    if type(v) ~= "number" or not is_integer(v) or v < 1 or v > 64 then
      return nil, "expected an integer from 1 to 64 (commands in flight), got " .. type_name(v)
    end
    return math.tointeger(v)
  end },
  connect_timeout = { check = function(v)
    if type(v) ~= "number" or v ~= v or v < 1 or v > 600 then
      return nil, "expected seconds from 1 to 600, got " .. type_name(v)
    end
    return v
  end },
  command_timeout = { check = function(v)
    if type(v) ~= "number" or v ~= v or v < 1 or v > 3600 then
      return nil, "expected seconds from 1 to 3600, got " .. type_name(v)
    end
    return v
  end },
}

M.field_order = { "name", "host", "port", "username", "password", "tls", "allow_insecure_cert", "ca_file",
  "folders", "filter", "on_error", "poll", "fetch_batch", "fetch_batch_bytes",
  "pipeline", "connections", "connect_timeout", "command_timeout" }

local function distance(a, b)
  local la, lb = #a, #b
  local prev, cur = {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    cur[0] = i
    for j = 1, lb do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev, cur = cur, prev
  end
  return prev[lb]
end

function M.suggest(name)
  local best, bestd
  for _, f in ipairs(M.field_order) do
    local d = distance(name:lower(), f)
    if not bestd or d < bestd then best, bestd = f, d end
  end
  if bestd and bestd <= math.max(2, #name // 3) then return best end
end

-- The line where FIELD is assigned in TEXT, searching from line FROM.
local function field_line(lines, field, from)
  field = field:gsub("%p", "%%%0")
  local pat1 = "^%s*" .. field .. "%s*="
  local pat2 = "[{,;]%s*" .. field .. "%s*="
  from = math.max(1, math.min(from or 1, #lines))
  for i = from, #lines do
    local l = lines[i]
    if l:find(pat1) or l:find(pat2) then return i end
  end
  for i = 1, from - 1 do
    local l = lines[i]
    if l:find(pat1) or l:find(pat2) then return i end
  end
end

local function split_lines(text)
  local lines = {}
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  return lines
end

-- A source file's setmetatable: no __gc, as finalizers run with no hook,
-- outside any budget, whenever the collector gets to them.
local function file_setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: a __gc metamethod is not allowed in a source file", 2)
  end
  return setmetatable(t, mt)
end

-- The environment of one source file: safe libraries plus imap and secret,
-- none of them shared with the engine or another file. DEFS (weak) maps
-- the value imap{...} returns to what it was given.
local function file_env(file, defs)
  local env = {}
  for _, k in ipairs { "assert", "error", "ipairs", "next", "pairs", "pcall", "select",
    "tonumber", "tostring", "type", "xpcall", "rawequal", "rawget", "rawlen", "rawset",
    "getmetatable" } do
    env[k] = _G[k]
  end
  env.setmetatable = file_setmetatable
  for _, lib in ipairs { "string", "table", "math", "utf8" } do
    local copy = {}
    for k, v in pairs(_G[lib]) do copy[k] = v end
    env[lib] = copy
  end
  env.math.randomseed = nil   -- the engine's generator (retry jitter)
  env.coroutine = sandbox.coroutines()
  env.os = { getenv = os.getenv, time = os.time, date = os.date, clock = os.clock }
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
    core.log("info", nil, file .. ": " .. table.concat(parts, "\t"))
  end
  env.secret = secret.constructors(file)
  env.oauth2 = oauth2.constructors()
  env.imap = function(t)
    if type(t) ~= "table" then
      error("imap expects a table: return imap { host = ..., username = ..., password = ... }", 2)
    end
    -- The line of the call, if the caller is the file (not a tail call).
    local info = debug.getinfo(2, "Sl")
    local def = {}
    defs[def] = { fields = t, line = info and info.source == "@" .. file and info.currentline or 0 }
    return def
  end
  env._G = env
  return env
end

-- Turns an error raised while running FILE into "FILE:LINE: what: message".
-- Only a position in FILE itself names a line: a message that merely looks
-- like one ("other.lua:7: ...", made by the file or by engine code) is
-- reported at line 1 as it is.
local function runtime_problem(file, msg)
  msg = tostring(msg):gsub("\nstack traceback:.*", "")
  if msg:sub(1, #file + 1) == file .. ":" then
    local line, rest = msg:match("^(%d+): (.*)$", #file + 2)
    if line then return string.format("%s:%s: error: %s", file, line, rest) end
  end
  return string.format("%s:1: error: %s", file, msg)
end

-- The line of PATH a message "PATH:LINE: ..." names, or 1.
local function line_of(msg, path)
  if msg:sub(1, #path + 1) ~= path .. ":" then return 1 end
  return tonumber(msg:match("^(%d+):", #path + 2)) or 1
end

-- What the file returned, checked field by field; runs under the file's
-- budget. Returns the definition and the problems.
local function validate(path, id, lines, result, defs)
  local problems = {}
  local function problem(line, field, msg)
    problems[#problems + 1] = string.format("%s:%d: %s: %s", path, line or 1, field, msg)
  end
  local d = defs[result]
  if not d then
    problem(#lines, "file", "must return imap { ... } (it returned " .. type_name(result) .. ")")
    return nil, problems
  end
  local call_line = d.line
  if call_line < 1 then
    -- `return imap{...}` is a tail call, so the call site is not on the
    -- stack: find it in the text instead.
    call_line = 1
    for i, l in ipairs(lines) do
      if l:find("imap%s*[{(]") then call_line = i; break end
    end
  end
  local def = { id = id, file = path }
  local fields = d.fields
  for k, v in next, fields do
    if type(k) ~= "string" then
      problem(call_line, "imap", "unexpected " .. (type(v) == "string" and "string" or type_name(v)) ..
        " without a field name")
    elseif not M.fields[k] then
      local hint = M.suggest(k)
      problem(field_line(lines, k, call_line) or call_line, k,
        "unknown field" .. (hint and (" (did you mean '" .. hint .. "'?)") or
          (" (known fields: " .. table.concat(M.field_order, ", ") .. ")")))
    else
      local value, verr = M.fields[k].check(v)
      if value == nil and verr then
        problem(field_line(lines, k, call_line) or call_line, k, verr)
      else
        def[k] = value
      end
    end
  end
  for _, f in ipairs(M.field_order) do
    if M.fields[f].required and rawget(fields, f) == nil then
      problem(call_line, f, "missing (required: host, username, password)")
    end
  end
  def.call_line = call_line
  return def, problems
end

-- Loads one file. Returns a definition or nil and a list of problems.
function M.load_file(path, id)
  local problems = {}
  local function problem(line, field, msg)
    problems[#problems + 1] = string.format("%s:%d: %s: %s", path, line or 1, field, msg)
  end

  if not id:match("^[%w][%w_.%-]*$") then
    problem(1, "id", "the file name must be letters, digits, '.', '-' or '_' (it is the source id): " .. id)
    return nil, problems
  end
  local text, err = core.readfile(path, M.FILE_MAX_BYTES)
  if not text then
    problem(1, "file", err)
    return nil, problems
  end
  -- Every message about this file goes through hide first, and the log
  -- scrubs the likely passwords even if the file never compiles.
  local hide, passwords = redact.hider(path, text)
  for i = 1, math.min(#passwords, 4) do core.add_secret(passwords[i]) end   -- the scrubber holds 64
  local function failed()
    for i, p in ipairs(problems) do problems[i] = hide(p) end
    table.sort(problems, function(a, b)
      local la, lb = line_of(a, path), line_of(b, path)
      if la ~= lb then return la < lb end
      return a < b
    end)
    return nil, problems
  end

  local lines = split_lines(text)
  local defs = setmetatable({}, { __mode = "k" })
  local chunk, serr = load(text, "@" .. path, "t", file_env(path, defs))
  if not chunk then
    -- serr is "PATH:LINE: message"
    local line, rest = serr:match(":(%d+): (.*)$")
    problem(tonumber(line), "syntax error", rest or serr)
    return failed()
  end
  local ok, def, found = vm.budget_pcall(M.FILE_BUDGET, M.FILE_SECONDS, function()
    return validate(path, id, lines, (chunk()), defs)
  end)
  if not ok then
    local msg = def
    local line = line_of(msg, path)
    if msg:find("instruction budget exceeded", 1, true) then
      problem(line, "file", string.format("did not finish within %d instructions (an endless loop?); " ..
        "a source file should only return imap{...}", M.FILE_BUDGET))
    elseif msg:find("time limit exceeded", 1, true) then
      problem(line, "file", string.format("did not finish within %g seconds (an endless loop, or a " ..
        "pattern that backtracks?); a source file should only return imap{...}", M.FILE_SECONDS))
    elseif msg:find("not enough memory", 1, true) then
      problem(1, "file", "ran out of memory while loading")
    else
      problems[#problems + 1] = runtime_problem(path, msg)
    end
    return failed()
  end
  for _, p in ipairs(found) do problems[#problems + 1] = p end
  if not def then return failed() end
  local call_line = def.call_line
  def.call_line = nil
  def.text = text
  -- Secrets are read now, so a missing variable or file shows at load time.
  if def.password then
    local ok2, rerr = (oauth2.is(def.password) and oauth2.resolve or secret.resolve)(def.password)
    if not ok2 then
      problem(field_line(lines, "password", call_line) or call_line, "password", rerr)
      def.password = nil
    end
  end
  if #problems > 0 then return failed() end

  if def.tls == nil then def.tls = true end
  if def.port == nil then def.port = def.tls == true and 993 or 143 end
  if def.allow_insecure_cert == nil then def.allow_insecure_cert = false end
  if def.name == nil then def.name = id end
  if def.poll == nil then def.poll = 300 end
  if def.fetch_batch == nil then def.fetch_batch = 200 end
  if def.fetch_batch_bytes == nil then def.fetch_batch_bytes = 16 << 20 end
  if def.pipeline == nil then def.pipeline = 4 end
  if def.connections == nil then def.connections = 1 end
  if def.connect_timeout == nil then def.connect_timeout = 30 end
  if def.command_timeout == nil then def.command_timeout = 120 end
  def.folders = def.folders or {}
  return def
end

-- Every *.lua file of DIR. Returns { ids = {sorted}, defs = {id=def},
-- problems = {id={...}}, files = {id=path} } or nil, err.
function M.load_dir(dir)
  local names, err = core.listdir(dir)
  if not names then return nil, err end
  local r = { ids = {}, defs = {}, problems = {}, files = {} }
  for _, name in ipairs(names) do
    local id = name:match("^(.*)%.lua$")
    if id and not name:match("^%.") then
      local path = dir:gsub("/+$", "") .. "/" .. name
      local st = core.stat(path)
      if st and st.type == "file" then
        r.ids[#r.ids + 1] = id
        r.files[id] = path
        local def, problems = M.load_file(path, id)
        if def then r.defs[id] = def else r.problems[id] = problems end
      end
    end
  end
  return r
end

-- A copy of DEF safe to show: hooks named, password masked.
function M.public(def)
  if not def then return nil end
  local out = {}
  for _, f in ipairs(M.field_order) do
    local v = def[f]
    if f == "password" then v = v and (oauth2.is(v) and tostring(v) or "***")
    elseif type(v) == "function" then v = "function" end
    out[f] = v
  end
  return out
end

return M
