-- Loading a Lua file the operator wrote (a source file, emailvault.lua):
-- in an environment of its own, under a budget; what it returns read with
-- raw access and checked against a schema; every problem reported as
-- "FILE:LINE: field: message" with the file's secrets hidden (redact.lua).
--
-- A schema is { name =, fields = { NAME = spec }, order = { NAME, ... },
-- noun = "field" }. A field's spec has `check(v)` returning the value to
-- keep or nil, message; `required`; or, for a value with fields of its own,
-- `record = SCHEMA` (a plain table, as `on = {...}`) or `made_by = SCHEMA`
-- (the value of a constructor such as imap{...}, see M.constructor). Those
-- are checked field by field too, with dotted names (on.status).

local core = require "vault.core"
local vm = require "vault.vm"
local sandbox = require "vault.sandbox"
local secret = require "secret"
local redact = require "redact"

local M = {}

M.FILE_BUDGET = 20000000     -- instructions a file may run
M.FILE_SECONDS = 5           -- and seconds
M.FILE_MAX_BYTES = 1 << 20

-- A value in a message. Never a metamethod: __tostring, __name and the
-- like are the file's code.
function M.type_name(v)
  if secret.is(v) then return "secret" end
  local t = type(v)
  if t == "string" then return string.format("string %q", #v > 40 and v:sub(1, 40) .. "..." or v) end
  if t == "number" then return "number " .. string.format(math.type(v) == "integer" and "%d" or "%.14g", v) end
  return t == "nil" and "nothing" or t
end
local type_name = M.type_name

function M.key_name(k)
  if type(k) == "string" or type(k) == "number" then return type_name(k) end
  return "a " .. type(k)
end

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

-- The name of NAMES closest to NAME, if it is close enough to be a typo.
function M.suggest(name, names)
  local best, bestd
  for _, f in ipairs(names) do
    local d = distance(name:lower(), f)
    if not bestd or d < bestd then best, bestd = f, d end
  end
  if bestd and bestd <= math.max(2, #name // 3) then return best end
end

-- The line where FIELD is assigned in LINES, searching from line FROM.
function M.field_line(lines, field, from)
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
local field_line = M.field_line

local function split_lines(text)
  local lines = {}
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  return lines
end

-- A file's setmetatable: no __gc, as finalizers run with no hook, outside
-- any budget, whenever the collector gets to them.
local function file_setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: a __gc metamethod is not allowed in a source or configuration file", 2)
  end
  return setmetatable(t, mt)
end

-- The environment of one file: safe libraries and secret.*, none of them
-- shared with the engine or another file.
function M.env(file)
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
  env._G = env
  return env
end

-- A constructor such as imap{...} for FILE: it returns an empty table and
-- records in DEFS (weak) what it was given and the line of the call.
function M.constructor(name, file, defs, usage)
  return function(t)
    if type(t) ~= "table" then error(usage, 2) end
    -- The line of the call, if the caller is the file (not a tail call).
    local info = debug.getinfo(2, "Sl")
    local made = {}
    defs[made] = { name = name, fields = t, line = info and info.source == "@" .. file and info.currentline or 0 }
    return made
  end
end

-- The line of a constructor call D recorded; a tail call (`return
-- imap{...}`) is not on the stack, so it is found in the text.
function M.call_line(d, lines)
  if d.line >= 1 then return d.line end
  for i, l in ipairs(lines) do
    if l:find(d.name .. "%s*[{(]") then return i end
  end
  return 1
end

-- Checks FIELDS (read raw) against SCHEMA into OUT. CTX: { lines, line
-- (where the table is), defs, problem(line, field, message), prefix }.
function M.check_fields(fields, schema, ctx, out)
  local prefix, line = ctx.prefix or "", ctx.line
  local noun = schema.noun or "field"
  for k, v in next, fields do
    if type(k) ~= "string" then
      ctx.problem(line, prefix ~= "" and prefix:sub(1, -2) or schema.name, "unexpected " ..
        (type(v) == "string" and "string" or type_name(v)) .. " without a " .. noun .. " name")
    elseif not schema.fields[k] then
      local hint = M.suggest(k, schema.order)
      ctx.problem(field_line(ctx.lines, k, line) or line, prefix .. k,
        "unknown " .. noun .. (hint and (" (did you mean '" .. hint .. "'?)") or
          (" (known " .. noun .. "s: " .. table.concat(schema.order, ", ") .. ")")))
    else
      local spec, at = schema.fields[k], field_line(ctx.lines, k, line) or line
      local inner = spec.record or spec.made_by
      if inner then
        out[k] = M.check_nested(v, spec, inner, ctx, at, prefix .. k)
      else
        local value, verr = spec.check(v)
        if value == nil and verr then ctx.problem(at, prefix .. k, verr) else out[k] = value end
      end
    end
  end
  for _, f in ipairs(schema.order) do
    if schema.fields[f].required and rawget(fields, f) == nil then
      ctx.problem(line, prefix .. f, "missing (required: " .. table.concat(M.required(schema), ", ") .. ")")
    end
  end
  return out
end

function M.required(schema)
  local list = {}
  for _, f in ipairs(schema.order) do
    if schema.fields[f].required then list[#list + 1] = f end
  end
  return list
end

-- A field whose value has fields of its own: a table (record) or what a
-- constructor made (made_by), checked with NAME's prefix.
function M.check_nested(v, spec, inner, ctx, at, name)
  local fields, line = v, at
  if spec.made_by then
    local d = type(v) == "table" and ctx.defs[v]
    if not d or d.name ~= inner.name then
      ctx.problem(at, name, "expected " .. inner.name .. " { ... }, got " .. type_name(v))
      return nil
    end
    fields, line = d.fields, M.call_line(d, ctx.lines)
  elseif type(v) ~= "table" or secret.is(v) or ctx.defs[v] then
    ctx.problem(at, name, "expected a table { " .. table.concat(inner.order, " = ..., ") ..
      " = ... }, got " .. type_name(v))
    return nil
  end
  local sub = { lines = ctx.lines, line = line, defs = ctx.defs, problem = ctx.problem, prefix = name .. "." }
  return M.check_fields(fields, inner, sub, {})
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

-- Loads the file at PATH. SPEC: env(path, defs) -> environment;
-- validate(ctx, result) -> value or nil (run under the file's budget: it
-- reads what the file made); after(ctx, value), once validated, for what
-- runs outside the budget (reading secrets); should: what the file
-- should do, for budget messages. ctx = { path, lines, defs, problem(line, field, msg) }.
-- Returns the value (with .text, the file's text) or nil and the
-- problems, sorted by line, secrets hidden.
function M.load(path, spec)
  local problems = {}
  local function problem(line, field, msg)
    problems[#problems + 1] = string.format("%s:%d: %s: %s", path, line or 1, field, msg)
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

  local ctx = { path = path, lines = split_lines(text), defs = setmetatable({}, { __mode = "k" }),
    problem = problem }
  local chunk, serr = load(text, "@" .. path, "t", spec.env(path, ctx.defs))
  if not chunk then
    -- serr is "PATH:LINE: message", or for a parser that ran out of C
    -- stack a message of its own with a traceback, whose first
    -- "FILE:LINE:" is this file's (lua/loader.lua), not the user's
    local line, rest = line_of(serr, path), serr
    if serr:sub(1, #path + 1) == path .. ":" then
      rest = serr:match("^%d+: (.*)", #path + 2) or serr
    end
    rest = rest:match("^[^\n]*")
    if rest == "C stack overflow" then rest = "nested too deeply (C stack overflow)" end
    problem(line, "syntax error", rest)
    return failed()
  end
  local ok, value = vm.budget_pcall(M.FILE_BUDGET, M.FILE_SECONDS, function()
    return spec.validate(ctx, (chunk()))
  end)
  if not ok then
    local msg = value
    local line = line_of(msg, path)
    if msg:find("instruction budget exceeded", 1, true) then
      problem(line, "file", string.format("did not finish within %d instructions (an endless loop?); %s",
        M.FILE_BUDGET, spec.should))
    elseif msg:find("time limit exceeded", 1, true) then
      problem(line, "file", string.format("did not finish within %g seconds (an endless loop, or a " ..
        "pattern that backtracks?); %s", M.FILE_SECONDS, spec.should))
    elseif msg:find("not enough memory", 1, true) then
      problem(1, "file", "ran out of memory while loading")
    else
      problems[#problems + 1] = runtime_problem(path, msg)
    end
    return failed()
  end
  if value and spec.after then spec.after(ctx, value) end
  if not value or #problems > 0 then return failed() end
  value.text = text
  return value
end

return M
