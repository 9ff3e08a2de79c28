-- What a source's task does: connect with the source's settings, report
-- failures as the source's error (kind, message, attempt, next retry) and
-- retry as on_error (or the default backoff) says; once connected, find the
-- folders to archive. The sync strategy (lua/sync.lua, issue 4) takes over
-- from there.

local task = require "vault.task"
local vm = require "vault.vm"
local core = require "vault.core"
local imap = require "vault.imap"
local secret = require "secret"
local oauth2 = require "oauth2"
local log = require "log"
local E = require "engine"

local M = {}

M.HOOK_BUDGET, M.HOOK_SECONDS = 1000000, 2   -- what one on_error call may take
M.RETRY_MIN, M.RETRY_MAX = 30, 3600

-- Exponential backoff with jitter from 30 s to 1 h. An authentication error
-- is not retried: repeated bad logins get accounts locked.
function M.default_retry(err, attempt)
  if err.kind == "auth" or err.kind == "config" then return nil end
  local delay = math.min(M.RETRY_MIN * 2 ^ (attempt - 1), M.RETRY_MAX)
  -- The server asked us to slow down: at least five minutes.
  local code = err.code or (err.message or ""):match("%[(%u+)%]")
  if code == "THROTTLED" or code == "UNAVAILABLE" or code == "LIMIT" then
    delay = math.max(delay, 300)
  end
  return delay * (0.75 + math.random() * 0.25)
end

-- Seconds until the next try, or nil to stay in error; a failing hook
-- returns "hook", message.
local function retry_delay(rec, err, attempt)
  local hook = rec.def.on_error
  if not hook then return M.default_retry(err, attempt) end
  local copy = { kind = err.kind, message = err.message, code = err.code }
  local ok, v = vm.budget_pcall(M.HOOK_BUDGET, M.HOOK_SECONDS, hook, copy, attempt)
  if not ok then return nil, "on_error failed: " .. v:gsub("\nstack traceback:.*", "") end
  -- v is the hook's value: only its type is looked at (no metamethod runs
  -- out here, past the budget).
  if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0) then
    return nil, "on_error must return seconds (a number >= 0) or nil, got " ..
      (type(v) == "number" and string.format("%.14g", v) or "a " .. type(v))
  end
  return v
end

-- IMAP LIST patterns: * matches anything, % anything but the delimiter.
-- Matched by stepping a set of pattern positions along the name (at most
-- #pattern + 1 of them), so a hostile folder name cannot make it backtrack:
-- time is #name * #pattern at worst.
function M.pattern_matches(pattern, name, delim)
  local d = (delim and delim ~= "") and delim:sub(1, 1) or "/"
  local np = #pattern
  -- positions reachable without consuming a character (wildcards match "")
  local function close(set)
    local i = 1
    local list = {}
    for p in pairs(set) do list[#list + 1] = p end
    while i <= #list do
      local p = list[i]
      local c = pattern:sub(p, p)
      if (c == "*" or c == "%") and not set[p + 1] then
        set[p + 1] = true
        list[#list + 1] = p + 1
      end
      i = i + 1
    end
    return set
  end
  local cur = close({ [1] = true })
  for i = 1, #name do
    local ch = name:sub(i, i)
    local nxt = {}
    for p in pairs(cur) do
      local c = pattern:sub(p, p)
      if c == "*" or (c == "%" and ch ~= d) then
        nxt[p] = true
      elseif p <= np and c == ch then
        nxt[p + 1] = true
      end
    end
    cur = close(nxt)
    if next(cur) == nil then return false end
  end
  return cur[np + 1] == true
end

-- The folders of LIST that the source archives.
function M.select_folders(folders, spec)
  local out = {}
  for _, f in ipairs(folders) do
    local keep = f.selectable
    if keep and spec.include and #spec.include > 0 then
      keep = false
      for _, p in ipairs(spec.include) do
        if M.pattern_matches(p, f.name, f.delimiter) then keep = true break end
      end
    end
    if keep and spec.exclude then
      for _, p in ipairs(spec.exclude) do
        if M.pattern_matches(p, f.name, f.delimiter) then keep = false break end
      end
    end
    if keep then out[#out + 1] = f end
  end
  return out
end

local function open(rec, password, token)
  local def = rec.def
  return imap.connect {
    host = def.host, port = def.port, tls = def.tls,
    allow_insecure_cert = def.allow_insecure_cert, ca_file = def.ca_file,
    username = def.username, password = password, oauth2_token = token,
    pipeline = def.pipeline, source = rec.id,
    connect_timeout = def.connect_timeout, timeout = def.command_timeout,
  }
end

-- With oauth2{...}: an access token first (kept, or refreshed when it is
-- about to expire). A kept token the server refuses may have been revoked
-- or cut short: one new token, one more try, before the failure is the
-- user's (kind auth).
local function connect_oauth2(rec)
  local spec = rec.def.password
  local token, fresh = oauth2.access_token(spec, rec.id, E.opts.data_dir)
  if not token then return nil, fresh end
  local conn, err = open(rec, nil, token)
  if not conn and err.kind == "auth" and not fresh then
    log.info(rec.id, "the server refused the kept OAuth2 access token; getting a new one", { error = err.message })
    token, fresh = oauth2.access_token(spec, rec.id, E.opts.data_dir, true)
    if not token then return nil, fresh end
    conn, err = open(rec, nil, token)
  end
  if not conn and err.kind == "auth" then
    err.message = err.message .. ". The token endpoint issued this token just now: check that username is " ..
      "the address of the account that signed in, that the scope allows IMAP and that IMAP is enabled " ..
      "for the mailbox (docs/oauth2.md)"
  end
  return conn, err
end

function M.connect(rec)
  local def = rec.def
  if oauth2.is(def.password) then return connect_oauth2(rec) end
  local password, perr = secret.reveal(def.password)
  if not password then return nil, { kind = "config", message = "password: " .. tostring(perr) } end
  return open(rec, password)
end

function M.fail(rec, err, attempt)
  local delay, hook_err = retry_delay(rec, err, attempt)
  local now = core.now()
  if hook_err then
    err = { kind = "hook", message = hook_err }
    delay = nil
  end
  local e = { kind = err.kind, message = err.message, code = err.code, at = now,
    attempt = attempt, next_retry = delay and (now + delay) or nil }
  E.set_status(rec, "error", e)
  log.error(rec.id, "source failed", { kind = e.kind, error = e.message, attempt = attempt,
    retry_in = delay and string.format("%.0fs", delay) or "never (fix the file or resume)" })
  return delay
end

-- Waits in a way vault.sync / vault.resume can cut short.
local function suspend(rec, seconds)
  rec.suspended = true
  if seconds then task.suspend(seconds) else task.suspend() end
  rec.suspended = false
end

-- A Lua error raised while a source runs, as that source's error: it then
-- goes through the retry policy like any other failure.
function M.error_of(msg)
  msg = tostring(msg):gsub("\nstack traceback:.*", "")
  if msg:find("archive.db", 1, true) or msg:find("the archive is", 1, true) then
    return { kind = "storage", message = msg }
  end
  if msg:find("not enough memory", 1, true) then
    return { kind = "storage", message = "out of memory: " .. msg }
  end
  return { kind = "internal", message = "internal error (please report it): " .. msg }
end

-- With a connection: list, choose folders, one pass, then follow (or, with
-- --once, log out). Returns true when a --once pass finished, else nil, err.
local function work(rec, conn)
  local sync = require "sync"
  local folders, lerr = conn:list()
  if not folders then return nil, lerr end
  local chosen = M.select_folders(folders, rec.def.folders or {})
  rec.folders = {}
  for _, f in ipairs(chosen) do rec.folders[#rec.folders + 1] = f.name end
  log.info(rec.id, "folders to archive", { count = #chosen, of = #folders })
  E.set_status(rec, rec.import_done and "active" or "importing")
  -- connections > 1: the import reads several folders at once, each more
  -- connection logged in like the first.
  local n = rec.def.connections or 1
  local pool = n > 1 and { size = n, connect = function() return M.connect(rec) end, error_of = M.error_of } or nil
  local ok, serr = sync.pass(rec, conn, chosen, pool)
  if not ok then return nil, serr end
  rec.attempt = 0
  if not rec.import_done then
    rec.import_done = true
    rec.progress = nil
    log.info(rec.id, "import complete")
  end
  E.set_status(rec, "active")
  if E.opts.once then
    conn:logout()
    return true
  end
  return sync.follow(rec, conn, chosen)
end

local function session(rec)
  local conn, err = M.connect(rec)
  if not conn then return nil, err end
  local ok, done, werr = pcall(work, rec, conn)
  if not ok then done, werr = nil, M.error_of(done) end
  if not done then pcall(conn.close, conn) end
  return done, werr
end

function M.run(rec)
  rec.attempt = 0
  while true do
    local ok, finished, err = pcall(session, rec)
    if not ok then finished, err = nil, M.error_of(finished) end
    if finished then
      E.finished(rec, true)
      return
    end
    rec.attempt = rec.attempt + 1
    local fok, delay = pcall(M.fail, rec, err or { kind = "protocol", message = "the connection ended" },
      rec.attempt)
    if not fok then
      log.error(rec.id, "cannot record the source's failure", { error = delay })
      delay = M.RETRY_MIN
    end
    if E.opts.once then
      E.finished(rec, false)
      return
    end
    suspend(rec, delay)
  end
end

return M
