-- Source files: the schema of imap{...}, loading each file in its own
-- environment under a budget, secrets, and validation with messages of the
-- form "FILE:LINE: field: message" (the machinery is lua/loader.lua's,
-- shared with emailvault.lua).
--
-- Whatever the file returns is its own: tables with metatables, functions.
-- It is read with raw access, inside the file's budget, and turned into a
-- definition made of the engine's own values (strings, numbers, booleans,
-- fresh tables, the hooks, secrets made by secret.*).

local core = require "vault.core"
local secret = require "secret"
local oauth2 = require "oauth2"
local loader = require "loader"

local M = {}

M.CONNECTIONS_MAX = 16       -- IMAP connections one source may use at once

-- The schema. `check` returns the normalized value or nil, message.
local function is_integer(v) return math.type(v) == "integer" or (type(v) == "number" and v == math.floor(v)) end

local type_name, key_name = loader.type_name, loader.key_name

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

-- The environment of one source file: loader.env's libraries and secret,
-- plus imap. DEFS (weak) maps the value imap{...} returns to what it was
-- given.
local function file_env(file, defs)
  local env = loader.env(file)
  env.oauth2 = oauth2.constructors()
  env.imap = loader.constructor("imap", file, defs,
    "imap expects a table: return imap { host = ..., username = ..., password = ... }")
  return env
end

local SCHEMA = { name = "imap", fields = M.fields, order = M.field_order }

-- What the file returned, checked field by field; runs under the file's
-- budget.
local function validate(ctx, result)
  local d = ctx.defs[result]
  if not d then
    ctx.problem(#ctx.lines, "file", "must return imap { ... } (it returned " .. type_name(result) .. ")" ..
      (ctx.id == "emailvault" and "; the engine configuration file goes beside the sources folder, not in it" or ""))
    return nil
  end
  ctx.call_line = loader.call_line(d, ctx.lines)
  local def = { id = ctx.id, file = ctx.path }
  loader.check_fields(d.fields, SCHEMA, { lines = ctx.lines, line = ctx.call_line, defs = ctx.defs,
    problem = ctx.problem }, def)
  return def
end

-- Secrets are read now, so a missing variable or file shows at load time.
local function after(ctx, def)
  if def.password then
    local ok, rerr = (oauth2.is(def.password) and oauth2.resolve or secret.resolve)(def.password)
    if not ok then
      ctx.problem(loader.field_line(ctx.lines, "password", ctx.call_line) or ctx.call_line, "password", rerr)
      def.password = nil
    end
  end
end

-- Loads one file. Returns a definition or nil and a list of problems.
function M.load_file(path, id)
  if not id:match("^[%w][%w_.%-]*$") then
    return nil, { string.format("%s:1: id: the file name must be letters, digits, '.', '-' or '_' " ..
      "(it is the source id): %s", path, id) }
  end
  local def, problems = loader.load(path, { env = file_env, should = "a source file should only return imap{...}",
    validate = function(ctx, result) ctx.id = id return validate(ctx, result) end, after = after })
  if not def then return nil, problems end

  if def.tls == nil then def.tls = true end
  if def.port == nil then def.port = def.tls == true and 993 or 143 end
  if def.allow_insecure_cert == nil then def.allow_insecure_cert = false end
  if def.name == nil then def.name = id end
  if def.poll == nil then def.poll = 300 end
  if def.fetch_batch == nil then def.fetch_batch = 1000 end
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
