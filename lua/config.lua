-- The engine's own file, emailvault.lua (docs/configuration.md): what belongs to
-- no one source. It returns a table of fields; today `on`, the event
-- handlers, and `serve`, the IMAP view. It is loaded and checked by lua/loader.lua exactly like a
-- source file, and on reload a broken file keeps the last good one.
--
-- Each concern is one top-level field with a record of its own, checked
-- field by field with dotted names: `on = {...}` now, next blob storage
-- (`store = {...}`) and serving (`serve = {...}`). A new one is an entry
-- in M.fields and M.order, and the code that applies it on reload; a
-- record made by a constructor (`store = s3 { ... }`) also has its schema
-- in CONSTRUCTORS, under the constructor's name.

local core = require "vault.core"
local secret = require "secret"
local loader = require "loader"
local log = require "log"

local M = {}

local function handler(when)
  return { doc = "function(ev), run as a task " .. when, check = function(v)
    if type(v) ~= "function" then
      return nil, "expected a function(ev), run " .. when .. ", got " .. loader.type_name(v)
    end
    return v
  end }
end

-- on = { EVENT = function(ev) ... end }
M.ON = { name = "on", noun = "event", order = { "status", "error" }, fields = {
  status = handler("when a source's status changes"),
  error = handler("when a source fails"),
} }

local function str(doc, pattern, what)
  return { doc = doc, check = function(v)
    if type(v) ~= "string" or v == "" then return nil, "expected a non-empty string, got " .. loader.type_name(v) end
    if pattern and not v:find(pattern) then return nil, what end
    return v
  end }
end

local function secret_or_string(doc)
  return { doc = doc, check = function(v)
    if secret.is(v) then return v end
    if type(v) ~= "string" or v == "" then
      return nil, "expected a string or secret.env/file/command(...), got " .. loader.type_name(v)
    end
    return v
  end }
end

local function size(doc, min)
  return { doc = doc, check = function(v)
    if math.type(v) ~= "integer" or v < min then
      return nil, "expected a whole number of bytes, at least " .. min .. ", got " .. tostring(v)
    end
    return v
  end }
end

-- storage = s3 { ... }: the archive's segments on S3-compatible object
-- storage (docs/storage.md); without it, the data folder holds them.
M.S3 = { name = "s3", order = { "endpoint", "region", "bucket", "prefix", "access_key",
  "secret_key", "path_style", "ca_file", "part_size", "multipart_threshold", "segment_size",
  "cache_size" }, fields = {
  endpoint = str("http(s)://host[:port] of the S3 service", "^https?://[^/]+/?$",
    "expected http://host[:port] or https://host[:port], without a path"),
  region = str("the bucket's region (us-east-1 when not set)"),
  bucket = str("the bucket", "^[a-z0-9][a-z0-9.-]+[a-z0-9]$",
    "expected a bucket name: 3-63 lower-case letters, digits, dots and hyphens"),
  prefix = { doc = "prefix of every object name, e.g. \"archive/\"", check = function(v)
    if type(v) ~= "string" then return nil, "expected a string, got " .. loader.type_name(v) end
    if v:sub(1, 1) == "/" then return nil, "must not start with /" end
    return v
  end },
  access_key = secret_or_string("the access key id"),
  secret_key = secret_or_string("the secret access key"),
  path_style = { doc = "true: http://host/bucket/key (the default); false: http://bucket.host/key",
    check = function(v)
      if type(v) ~= "boolean" then return nil, "expected true or false, got " .. loader.type_name(v) end
      return v
    end },
  ca_file = str("trust only this CA file's certificates (https)"),
  part_size = size("multipart part size (default 8 MiB)", 5 * 1024),
  multipart_threshold = size("objects bigger than this are uploaded in parts (default 16 MiB)", 5 * 1024),
  segment_size = size("segments are sealed and stored whole at this size (default 64 MiB)", 4096),
  cache_size = size("local segment files kept as a cache (default 1 GiB)", 0),
} }
M.S3.fields.endpoint.required = true
M.S3.fields.bucket.required = true
M.S3.fields.access_key.required = true
M.S3.fields.secret_key.required = true

-- serve = imap { listen =, tls =, cert_file =, key_file =, allow_plaintext =,
--                users = { NAME = { password =, sources = { ... } } } }: the IMAP
-- view (docs/imap-view.md), applied by lua/serve.lua.
local function expect_bool(v)
  if type(v) ~= "boolean" then return nil, "expected true or false, got " .. loader.type_name(v) end
  return v
end

local function existing_file(what)
  return function(v)
    if type(v) ~= "string" or v == "" then
      return nil, "expected the path of " .. what .. " (string), got " .. loader.type_name(v)
    end
    local st = core.stat(v)
    if not st then return nil, "no such file: " .. v end
    if st.type ~= "file" then return nil, "not a file: " .. v end
    return v
  end
end

local function check_listen(v)
  if type(v) ~= "string" then
    return nil, 'expected an address and port such as "127.0.0.1:1993", got ' .. loader.type_name(v)
  end
  local host, port = v:match("^%[([%x:]+)%]:(%d+)$")
  if not host then host, port = v:match("^([^:]+):(%d+)$") end
  port = tonumber(port)
  if not host or not port or port < 1 or port > 65535 then
    return nil, 'expected an address and port such as "127.0.0.1:1993" or "[::1]:1993", got ' ..
      loader.type_name(v)
  end
  return v
end

local function check_users(v)
  if type(v) ~= "table" or secret.is(v) then
    return nil, 'expected a table { NAME = { password = ..., sources = { "id", ... } } }, got ' ..
      loader.type_name(v)
  end
  local out, n = {}, 0
  for name, u in next, v do
    if type(name) ~= "string" or not name:find("^[%w._@+-]+$") then
      return nil, "a user name must be letters, digits and ._@+- (got " .. loader.key_name(name) .. ")"
    end
    if type(u) ~= "table" or secret.is(u) then
      return nil, name .. ": expected a table { password = ..., sources = { ... } }, got " .. loader.type_name(u)
    end
    local pw, sources = rawget(u, "password"), rawget(u, "sources")
    for k in next, u do
      if k ~= "password" and k ~= "sources" then
        return nil, name .. ": unknown field " .. loader.key_name(k) .. " (known fields: password, sources)"
      end
    end
    if type(pw) == "string" then
      if pw == "" then return nil, name .. ".password: must not be empty" end
      pw = secret.literal(pw)
    elseif not secret.is(pw) then
      -- Not even the wrong value is shown: it may be the password.
      return nil, name .. '.password: expected a string, secret.env "VAR", secret.file "path" or ' ..
        "secret.command{...}, got a " .. type(pw)
    end
    if type(sources) ~= "table" or secret.is(sources) then
      return nil, name .. '.sources: expected a list of source ids { "work", "home" }, got ' ..
        loader.type_name(sources)
    end
    local list = {}
    for k, id in next, sources do
      if math.type(k) ~= "integer" or type(id) ~= "string" or id == "" then
        return nil, name .. ".sources: expected a list of source ids (strings), found " ..
          loader.key_name(k) .. " = " .. loader.type_name(id)
      end
      list[#list + 1] = id
    end
    table.sort(list)
    out[name] = { password = pw, sources = list }
    n = n + 1
  end
  if n == 0 then return nil, "no users: nobody could log in" end
  return out
end

M.SERVE = { name = "imap", order = { "listen", "tls", "cert_file", "key_file", "allow_plaintext", "users" },
  fields = {
    listen = { required = true, check = check_listen },
    tls = { check = expect_bool },
    cert_file = { check = existing_file("a certificate (PEM)") },
    key_file = { check = existing_file("a private key (PEM)") },
    allow_plaintext = { check = expect_bool },
    users = { required = true, check = check_users },
  } }

M.fields = {
  on = { record = M.ON, doc = "event handlers" },
  serve = { made_by = M.SERVE, doc = "the IMAP view" },
  storage = { made_by = M.S3, doc = "where messages' bytes are kept: s3 { ... } (default: the data folder)" },
}
M.order = { "on", "serve", "storage" }

-- Constructors the file may call, by name: name -> schema of its fields
-- (the schema's name is the constructor's).
local CONSTRUCTORS = { imap = M.SERVE, s3 = M.S3 }

local function loopback(listen)
  local host = listen:match("^%[(.*)%]:%d+$") or listen:match("^(.*):%d+$") or ""
  return host:find("^127%.") or host == "::1" or host == "localhost"
end

-- What serve = imap{...} must say as a whole, once its fields are checked.
local function check_serve(s, problem)
  if not s.listen or not s.users then return end
  if s.tls and not (s.cert_file and s.key_file) then
    problem("serve", "tls = true needs cert_file and key_file")
  elseif (s.cert_file ~= nil) ~= (s.key_file ~= nil) then
    problem("serve", "cert_file and key_file go together")
  elseif not s.tls and not s.cert_file and not s.allow_plaintext and not loopback(s.listen) then
    problem("serve", "plain IMAP on " .. s.listen .. " would send passwords in the clear beyond " ..
      "this machine: give tls = true with cert_file and key_file (or key and cert for STARTTLS), " ..
      "or allow_plaintext = true")
  end
end

local SCHEMA = { name = "emailvault", fields = M.fields, order = M.order }

-- What handlers see as `vault`: the API's functions in tables of the
-- file's own, so no handler reaches a table the engine or eval uses.
local function api_copy()
  local copy = {}
  for k, v in pairs(require "vault") do
    if type(v) == "table" then
      local t = {}
      for k2, v2 in pairs(v) do t[k2] = v2 end
      v = t
    end
    copy[k] = v
  end
  return copy
end

local function file_env(file, defs)
  local env = loader.env(file)
  for name, schema in pairs(CONSTRUCTORS) do
    env[name] = loader.constructor(name, file, defs,
      name .. " expects a table: " .. name .. " { " .. table.concat(schema.order, " = ..., ") .. " = ... }")
  end
  env.vault = api_copy()
  return env
end

local function validate(ctx, result)
  if type(result) ~= "table" or secret.is(result) or ctx.defs[result] then
    ctx.problem(#ctx.lines, "file", "must return a table { on = { ... } } (it returned " ..
      loader.type_name(result) .. ")")
    return nil
  end
  local line = 1
  for i, l in ipairs(ctx.lines) do
    if l:find("^%s*return%s*{") then line = i break end
  end
  local def = { file = ctx.path }
  loader.check_fields(result, SCHEMA, { lines = ctx.lines, line = line, defs = ctx.defs,
    problem = ctx.problem }, def)
  def.on = def.on or {}
  if def.serve then
    local at = loader.field_line(ctx.lines, "serve", line) or line
    check_serve(def.serve, function(field, msg) ctx.problem(at, field, msg) end)
  end
  return def
end

-- Loads PATH: a definition { file, text, on = {...} }, or nil and the
-- problems. A missing file is no configuration ({ missing = true }),
-- unless REQUIRED (named with --config).
function M.load(path, required)
  local st = core.stat(path)
  if not st then
    if required then
      return nil, { path .. ":1: file: does not exist (named by --config)" }
    end
    return { file = path, missing = true, on = {} }
  end
  return loader.load(path, { env = file_env, validate = validate,
    should = "emailvault.lua should only return a table { on = { ... } }" })
end

-- ---- the running engine's configuration --------------------------------
M.current = nil      -- the last good definition
M.problems = nil     -- the problems of the file on disk, when it is broken

-- The handler for EVENT, or nil.
function M.handler(event)
  return M.current and M.current.on[event]
end

-- Loads the file again; keeps the last good definition when it fails.
-- Returns "loaded", "unchanged", "none" (no file) or "failed".
function M.reload(path, required)
  local def, problems = M.load(path, required)
  if not def then
    M.problems = problems
    for _, p in ipairs(problems) do log.error(nil, "engine configuration rejected", { problem = p }) end
    if M.current then
      log.warn(nil, "keeping the last good engine configuration", { file = path })
    end
    return "failed"
  end
  M.problems = nil
  local old = M.current
  -- An unchanged file keeps the handlers that run: their upvalues are
  -- their state (what an alert last said, and when), which a reload of
  -- the sources must not reset.
  if old and not old.missing and not def.missing and old.text == def.text then return "unchanged" end
  M.current = def
  if def.missing then
    if old and not old.missing then log.info(nil, "engine configuration removed", { file = path }) end
    return "none"
  end
  local names = {}
  for _, e in ipairs(M.ON.order) do if def.on[e] then names[#names + 1] = e end end
  log.info(nil, "engine configuration loaded", { file = path, handlers = names })
  if old and not old.missing and M.storage_text(old) ~= M.storage_text(def) then
    log.warn(nil, "the storage of emailvault.lua changed: it takes effect when the engine restarts",
      { file = path })
  end
  return "loaded"
end

-- What identifies DEF's storage (for telling a change on reload).
function M.storage_text(def)
  local s = def and def.storage
  if not s then return "local" end
  return table.concat({ s.endpoint or "", s.bucket or "", s.prefix or "", s.region or "" }, "|")
end

-- What vault.config() shows.
function M.view(path)
  local cur = M.current
  local handlers = {}
  if cur then
    for _, e in ipairs(M.ON.order) do if cur.on[e] then handlers[#handlers + 1] = e end end
  end
  local ok, serve = pcall(require, "vault.serve")
  return { file = path, loaded = cur ~= nil and not cur.missing, handlers = handlers,
    config_error = M.problems and M.problems[1], config_errors = M.problems,
    serve = ok and serve.info() or nil }
end

return M
