-- OAuth2 logins for IMAP (Gmail, Microsoft 365): the oauth2{...} value a
-- source file gives as its password and the provider presets, access tokens
-- from the token endpoint (RFC 6749's refresh grant) kept until shortly
-- before they expire, and the refresh token the endpoint rotates, kept 0600
-- in DATA/oauth2/ID.json. lua/oauth2_login.lua gets the first refresh token
-- (the device authorization grant, RFC 8628).
--
-- Nothing secret leaves this file except the access token handed to the
-- IMAP login: every token and the client secret go to the log's scrubber
-- when first seen, and every message made here is cleaned of them again,
-- because messages also reach archive.db, status and eval, which the
-- scrubber does not see.

local core = require "vault.core"
local secret = require "secret"
local json = require "json"
local log = require "log"

local M = {}

M.TIMEOUT = 30                -- seconds for one request to the token endpoint
M.MAX_BODY = 64 * 1024        -- what an endpoint may answer
M.MARGIN = 60                 -- refresh this long before expiry (at most a tenth of the lifetime)
M.DEFAULT_LIFETIME = 3600     -- when the endpoint gives no expires_in

M.PRESETS = {
  google = {
    token_url = "https://oauth2.googleapis.com/token",
    device_url = "https://oauth2.googleapis.com/device/code",
    scope = "https://mail.google.com/",
  },
  microsoft = {
    token_url = "https://login.microsoftonline.com/%s/oauth2/v2.0/token",
    device_url = "https://login.microsoftonline.com/%s/oauth2/v2.0/devicecode",
    scope = "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
    tenant = "common",
  },
}

local FIELDS = { "token_url", "client_id", "client_secret", "refresh_token", "scope", "device_url" }
local SECRET_FIELDS = { client_secret = true, refresh_token = true }

-- ---- the oauth2{...} values ---------------------------------------------

-- A value is an empty table, like a secret: its fields are kept here, out
-- of reach of the file that made it.
local specs = setmetatable({}, { __mode = "k" })   -- value -> { preset, fields }
local Spec = {
  __name = "oauth2",
  __tostring = function(s)
    local d = specs[s]
    return (d and d.preset and ("oauth2." .. d.preset) or "oauth2") .. "{...}"
  end,
  __metatable = "oauth2",
}

function M.is(v) return specs[v] ~= nil end

-- A URL the token may travel to: https, or http to this machine only.
local function check_url(v)
  if type(v) ~= "string" then return true end   -- a secret: checked when used
  if v:find("^https://[^/]") then return true end
  local host = v:match("^http://%[?([^/%]:]+)")
  if host and (host == "localhost" or host:find("^127%.%d+%.%d+%.%d+$") or host == "::1") then
    return true
  end
  return nil, "must be an https:// URL (http:// only for 127.0.0.1 or localhost)"
end

-- Errors name the file's line: LEVEL 3 is the caller of the constructor
-- (make is called, not tail-called, so the frames are known).
local function make(preset, t)
  local level = 3
  local what = preset and ("oauth2." .. preset) or "oauth2"
  if type(t) ~= "table" then
    error(what .. " expects a table: " .. what .. " { client_id = ..., refresh_token = ... }", level)
  end
  local known = {}
  for _, f in ipairs(FIELDS) do known[f] = true end
  if preset == "microsoft" then known.tenant = true end
  local fields = {}
  for k, v in next, t do
    if type(k) ~= "string" or not known[k] then
      local names = {}
      for _, f in ipairs(FIELDS) do names[#names + 1] = f end
      if preset == "microsoft" then names[#names + 1] = "tenant" end
      error(string.format("%s: unknown field %s (known: %s)", what,
        type(k) == "string" and k or ("a " .. type(k)), table.concat(names, ", ")), level)
    end
    -- The value is never shown: it may be a token.
    if type(v) == "string" then
      if v == "" then error(what .. ": " .. k .. " must not be empty", level) end
      if SECRET_FIELDS[k] then v = secret.literal(v) end
    elseif not secret.is(v) then
      error(string.format('%s: %s must be a string or secret.env "VAR", secret.file "path" or ' ..
        "secret.command{...}, got a %s", what, k, type(v)), level)
    end
    if k == "token_url" or k == "device_url" then
      local ok, err = check_url(v)
      if not ok then error(what .. ": " .. k .. " " .. err, level) end
    end
    if k == "tenant" and type(v) == "string" and not v:find("^[%w][%w%.%-]*$") then
      error(what .. ": tenant must be a tenant id, a domain, common, organizations or consumers", level)
    end
    fields[k] = v
  end
  if fields.client_id == nil then error(what .. ": client_id is required", level) end
  if not preset and fields.token_url == nil then
    error("oauth2: token_url is required (or use oauth2.google{...} or oauth2.microsoft{...})", level)
  end
  local s = setmetatable({}, Spec)
  specs[s] = { preset = preset, fields = fields }
  return s
end

-- What a source file sees as `oauth2`: oauth2{...}, oauth2.google{...},
-- oauth2.microsoft{...}. A fresh table per file.
function M.constructors()
  local c = {}
  for name in pairs(M.PRESETS) do
    c[name] = function(t)
      local s = make(name, t)
      return s
    end
  end
  return setmetatable(c, {
    __call = function(_, t)
      local s = make(nil, t)
      return s
    end,
    __metatable = "oauth2",
  })
end

local function value(v)
  if v == nil or type(v) == "string" then return v end
  return secret.reveal(v)
end

-- Reads every secret of SPEC now (so a missing variable shows when the file
-- is loaded). Returns true or nil, message.
function M.resolve(spec)
  local d = specs[spec]
  if not d then return nil, "not an oauth2{...} value" end
  for _, f in ipairs { "tenant", table.unpack(FIELDS) } do
    local v = d.fields[f]
    if v ~= nil and type(v) ~= "string" then
      local ok, err = secret.resolve(v)
      if not ok then return nil, "oauth2 " .. f .. ": " .. tostring(err) end
      if f == "token_url" or f == "device_url" then
        local uok, uerr = check_url(secret.reveal(v))
        if not uok then return nil, "oauth2 " .. f .. " " .. uerr end
      end
    end
  end
  return true
end

-- The settings with the preset filled in, secrets revealed: for this file
-- and oauth2_login.lua only. Never print it.
function M.settings(spec)
  local d = assert(specs[spec], "not an oauth2{...} value")
  local out = { preset = d.preset }
  for _, f in ipairs(FIELDS) do
    local v, err = value(d.fields[f])
    if d.fields[f] ~= nil and v == nil then return nil, "oauth2 " .. f .. ": " .. tostring(err) end
    out[f] = v
  end
  local p = d.preset and M.PRESETS[d.preset]
  if p then
    local tenant = value(d.fields.tenant) or p.tenant
    out.token_url = out.token_url or p.token_url:format(tenant)
    out.device_url = out.device_url or p.device_url:format(tenant)
    out.scope = out.scope or p.scope
  end
  return out
end

-- ---- messages ----------------------------------------------------------------

-- MSG with every secret string of LIST replaced by ***.
local function hide(msg, list)
  msg = tostring(msg)
  for _, s in ipairs(list) do
    if type(s) == "string" and #s >= 3 then
      local out, from = {}, 1
      while true do
        local i, j = msg:find(s, from, true)
        if not i then break end
        out[#out + 1] = msg:sub(from, i - 1) .. "***"
        from = j + 1
      end
      out[#out + 1] = msg:sub(from)
      msg = table.concat(out)
    end
  end
  return msg
end
M.hide = hide

-- A text from the endpoint, fit to quote: printable, bounded.
local function printable(s, max)
  if type(s) ~= "string" then return nil end
  s = s:gsub("[%c\128-\255]", "?")
  if #s > max then s = s:sub(1, max) .. "..." end
  return s
end

function M.hostport(url)
  local scheme, rest = tostring(url):match("^(%a+)://(.*)$")
  if not scheme then return "(invalid URL)" end
  local auth = rest:match("^([^/?#]*)"):gsub("^.*@", "")
  if auth:find("^%[") then
    local h, p = auth:match("^(%[[^%]]*%]):?(%d*)$")
    if h then return h .. ":" .. (p ~= "" and p or (scheme == "https" and "443" or "80")) end
  end
  local h, p = auth:match("^([^:]*):?(%d*)$")
  if not h then return "(invalid URL)" end
  return h .. ":" .. (p ~= "" and p or (scheme:lower() == "https" and "443" or "80"))
end

-- The one place that parses JSON (the endpoints' answers), so the parser is
-- easily swapped (lua-cjson). A table or nil.
function M.decode_json(text)
  if type(text) ~= "string" or #text > M.MAX_BODY then return nil end
  local v = json.decode(text)
  if type(v) ~= "table" then return nil end
  return v
end

-- POSTs FORM to URL. Returns the answer's JSON object and the HTTP status,
-- or nil and an error { kind, message } for a failure to get an answer at
-- all. Never follows a redirect: a 307 would take the refresh token along.
function M.post(url, form, what)
  local http = require "http"
  local r, err = http.request {
    method = "POST", url = url, body = http.form(form), timeout = M.TIMEOUT,
    max_size = M.MAX_BODY, max_redirects = 0,
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded", Accept = "application/json" },
  }
  if not r then
    return nil, { kind = err.kind, message = what .. ": " .. tostring(err.message) }
  end
  return M.decode_json(r.body), r.status
end

-- The endpoint's `error` and `error_description`, as "code: description".
function M.endpoint_error(j)
  if type(j) ~= "table" or type(j.error) ~= "string" then return nil end
  local code = printable(j.error, 60)
  local desc = printable(j.error_description, 400)
  return code, desc and (code .. ": " .. desc) or code
end

-- What each refusal of a refresh means and what to do, first (status
-- shows the first 100 characters); %s is the source id.
local REFUSALS = {
  invalid_grant = "the refresh token was revoked or has expired: run emailvault oauth2 login %s " ..
    "(or set a new refresh_token in the source file)",
  invalid_client = "the token endpoint does not accept this client: check client_id and client_secret " ..
    "in the source file against the app registration",
  unauthorized_client = "this client may not use refresh tokens: check the app registration " ..
    "(docs/oauth2.md), then run emailvault oauth2 login %s",
  invalid_scope = "the scope was refused: check scope in the source file (docs/oauth2.md), then run " ..
    "emailvault oauth2 login %s",
  invalid_request = "the token endpoint rejected the request: check the oauth2{...} settings of the source file",
}

-- ---- the stored refresh token -------------------------------------------------

function M.store_path(data_dir, id)
  return data_dir:gsub("/+$", "") .. "/oauth2/" .. id .. ".json"
end

-- Which settings a stored token belongs to: the endpoint, the client and
-- the file's own refresh_token. When any of them changes in the file, the
-- stored token no longer applies (the user gave a new one, or another app).
function M.fingerprint(s)
  return core.sha256(table.concat({ s.token_url or "", s.client_id or "", s.refresh_token or "" }, "\0"))
end

-- The stored { refresh_token, from, updated } of PATH, or nil.
function M.read_store(path, id)
  local text = core.readfile(path, M.MAX_BODY)
  if not text then return nil end
  local j = M.decode_json(text)
  if not j or type(j.refresh_token) ~= "string" or j.refresh_token == "" or type(j.from) ~= "string" then
    log.warn(id, "the stored OAuth2 refresh token cannot be read; it is ignored", { file = path })
    return nil
  end
  core.add_secret(j.refresh_token)
  local st = core.stat(path)
  if st and st.mode & 0x3f ~= 0 then
    log.warn(id, "the stored OAuth2 refresh token is readable by other users; chmod 600 it",
      { file = path, mode = string.format("%o", st.mode) })
  end
  return j
end

-- Stores TOKEN for settings FROM (a fingerprint). When USED is given (the
-- token this one replaces), a store that meanwhile holds another token
-- (`emailvault oauth2 login` ran) is kept. Returns true or nil, err.
function M.write_store(path, token, from, used, id)
  if used then
    local now = M.read_store(path, id)
    if now and now.refresh_token ~= used and now.from == from then
      log.warn(id, "a new OAuth2 sign-in was stored meanwhile; it is kept", { file = path })
      return true
    end
  end
  local ok, err = core.mkdir(path:match("^(.*)/[^/]*$"), 448)   -- 0700
  if not ok then return nil, err end
  return core.writefile(path, json.encode { version = 1, refresh_token = token, from = from,
    updated = math.floor(core.now()) }, 384)                     -- 0600
end

-- The refresh token to use: the stored one if it belongs to the file's
-- present settings, else the file's. Returns token, or nil.
local function current_refresh(s, id, path)
  local fp = M.fingerprint(s)
  local stored = M.read_store(path, id)
  if stored then
    if stored.from == fp then return stored.refresh_token, fp end
    log.info(id, "the oauth2 settings of the source file changed: the stored refresh token is dropped",
      { file = path })
    core.remove(path)
  end
  return s.refresh_token, fp
end

-- ---- access tokens ------------------------------------------------------------

local state = {}   -- source id -> { spec, access, expires, lifetime, busy }

-- Drops what is kept for ID (its file changed, or it was removed).
function M.forget(id) state[id] = nil end

-- An access token for source ID with settings SPEC: the kept one while it
-- is good for more than the margin, else a new one from the token endpoint.
-- FORCE asks for a new one. Returns token, fresh (true when it was obtained
-- by this call), or nil and an error { kind, message }.
function M.access_token(spec, id, data_dir, force)
  local task = require "vault.task"
  local st = state[id]
  if not st or st.spec ~= spec then
    st = { spec = spec }
    state[id] = st
  end
  -- One refresh at a time: a second one would spend a token the first rotates.
  local waited = 0
  while st.busy and waited < M.TIMEOUT + 5 do
    task.sleep(0.1)
    waited = waited + 0.1
  end
  local now = core.monotonic()
  if not force and st.access and now < st.expires - math.min(M.MARGIN, st.lifetime / 10) then
    return st.access, false
  end
  st.busy = true
  -- Cleared however this ends: an error, or the task cancelled mid-request.
  local _ <close> = setmetatable({}, { __close = function() st.busy = false end })
  local token, err = M.refresh(st, id, data_dir)
  if not token then return nil, err end
  return token, true
end

-- One refresh grant. Returns the access token or nil, error.
function M.refresh(st, id, data_dir)
  local s, serr = M.settings(st.spec)
  if not s then return nil, { kind = "config", message = serr } end
  local path = M.store_path(data_dir, id)
  local rt, fp = current_refresh(s, id, path)
  local hidden = { s.client_secret, rt, s.refresh_token }
  if not rt then
    return nil, { kind = "auth", message = "no OAuth2 refresh token yet: run emailvault oauth2 login " .. id ..
      " (or set refresh_token in the source file)" }
  end
  local where = "the OAuth2 token endpoint at " .. M.hostport(s.token_url)
  log.debug(id, "refreshing the OAuth2 access token", { endpoint = M.hostport(s.token_url) })
  local j, status = M.post(s.token_url, {
    grant_type = "refresh_token", refresh_token = rt, client_id = s.client_id,
    client_secret = s.client_secret, scope = s.scope,
  }, where)
  if not j and type(status) == "table" then
    status.message = hide(status.message, hidden)
    return nil, status
  end
  if status == 200 and j and type(j.access_token) == "string" and j.access_token ~= "" then
    core.add_secret(j.access_token)
    hidden[#hidden + 1] = j.access_token
    if type(j.token_type) == "string" and j.token_type:lower() ~= "bearer" then
      return nil, { kind = "protocol", message = hide(where .. " gave a token of type " ..
        printable(j.token_type, 40) .. ", not Bearer", hidden) }
    end
    local lifetime = tonumber(j.expires_in) or M.DEFAULT_LIFETIME
    if lifetime ~= lifetime or lifetime < 1 then lifetime = 1 end
    st.access, st.lifetime = j.access_token, lifetime
    st.expires = core.monotonic() + lifetime
    local new = j.refresh_token
    if type(new) == "string" and new ~= "" and new ~= rt then
      core.add_secret(new)
      local ok, werr = M.write_store(path, new, fp, rt, id)
      if ok then
        log.info(id, "the token endpoint rotated the OAuth2 refresh token; the new one is kept", { file = path })
      else
        log.error(id, "cannot keep the rotated OAuth2 refresh token; it is lost when the engine stops",
          { error = hide(werr, { new }) })
      end
    end
    log.debug(id, "OAuth2 access token obtained", { expires_in = string.format("%.0fs", lifetime) })
    return st.access
  end
  st.access = nil
  local code, said = M.endpoint_error(j)
  if code and status >= 400 and status < 500 and status ~= 429 then
    local fmt = REFUSALS[code] or "the token endpoint refused the refresh: run emailvault oauth2 login %s"
    return nil, { kind = "auth", message = hide(fmt:format(id) .. " (" .. where .. " said " .. said .. ")",
      hidden) }
  end
  return nil, { kind = "protocol", message = hide(string.format("%s answered HTTP %d%s; it will be retried",
    where, status, said and (" (" .. said .. ")") or (j and "" or " without a JSON answer")), hidden) }
end

return M
