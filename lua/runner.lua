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
local log = require "log"
local E = require "engine"

local M = {}

M.HOOK_BUDGET = 1000000
M.RETRY_MIN, M.RETRY_MAX = 30, 3600

-- Exponential backoff with jitter from 30 s to 1 h. An authentication error
-- is not retried: repeated bad logins get accounts locked.
function M.default_retry(err, attempt)
  if err.kind == "auth" or err.kind == "config" then return nil end
  local delay = math.min(M.RETRY_MIN * 2 ^ (attempt - 1), M.RETRY_MAX)
  return delay * (0.75 + math.random() * 0.25)
end

-- Seconds until the next try, or nil to stay in error; a failing hook
-- returns "hook", message.
local function retry_delay(rec, err, attempt)
  local hook = rec.def.on_error
  if not hook then return M.default_retry(err, attempt) end
  local copy = { kind = err.kind, message = err.message, code = err.code }
  local ok, v = vm.budget_pcall(M.HOOK_BUDGET, hook, copy, attempt)
  if not ok then return nil, "on_error failed: " .. tostring(v):gsub("\nstack traceback:.*", "") end
  if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0) then
    return nil, "on_error must return seconds (a number >= 0) or nil, got " .. tostring(v)
  end
  return v
end

-- IMAP LIST patterns: * matches anything, % anything but the delimiter.
function M.pattern_matches(pattern, name, delim)
  local d = (delim and delim ~= "") and delim:sub(1, 1) or "/"
  local not_delim = "[^" .. (d:match("%p") and "%" .. d or d) .. "]*"
  local lp = pattern:gsub(".", function(ch)
    if ch == "*" then return ".*" end
    if ch == "%" then return not_delim end
    if ch:match("%p") then return "%" .. ch end
    return ch
  end)
  return name:match("^" .. lp .. "$") ~= nil
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

function M.connect(rec)
  local def = rec.def
  local password, perr = secret.reveal(def.password)
  if not password then return nil, { kind = "config", message = "password: " .. tostring(perr) } end
  return imap.connect {
    host = def.host, port = def.port, tls = def.tls,
    allow_insecure_cert = def.allow_insecure_cert, ca_file = def.ca_file,
    username = def.username, password = password,
    pipeline = def.pipeline, source = rec.id,
  }
end

-- Waits before the next try; vault.sync / vault.resume wake it early.
local function wait_retry(rec, delay)
  if delay then
    task.suspend(delay)
  else
    task.suspend()
  end
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

function M.run(rec)
  local attempt = 0
  while true do
    if rec.status ~= "error" then E.set_status(rec, "importing") end
    local conn, err = M.connect(rec)
    if conn then
      local folders, lerr = conn:list()
      if folders then
        local chosen = M.select_folders(folders, rec.def.folders or {})
        rec.folders = {}
        for _, f in ipairs(chosen) do rec.folders[#rec.folders + 1] = f.name end
        attempt = 0
        E.set_status(rec, "importing")
        log.info(rec.id, "folders to archive", { count = #chosen, of = #folders })
        if E.sync then
          local ok, serr = E.sync(rec, conn)
          if not ok then err = serr end
        else
          -- Stay connected and watch INBOX until the source stops.
          local _, xerr = conn:examine("INBOX")
          err = xerr
          while not err do
            if conn:has("IDLE") then
              local ev, ierr = conn:idle(25 * 60)
              if not ev then err = ierr end
            else
              task.sleep(rec.def.poll)
              local ev, nerr = conn:noop()
              if not ev then err = nerr end
            end
          end
        end
      else
        err = lerr
      end
      conn:close()
    end
    attempt = attempt + 1
    wait_retry(rec, M.fail(rec, err or { kind = "protocol", message = "the connection ended" }, attempt))
  end
end

return M
