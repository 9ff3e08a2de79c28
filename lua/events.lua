-- The handlers of emailvault.lua (`on = { status = fn, error = fn }`): each
-- event runs its handler as a task, so it may wait (vault.http.request),
-- under limits it cannot lift: instructions counted over the whole run and
-- one deadline, waits included, past which the task is cancelled
-- (task_set_budget in src/lua/task.c).
--
-- Events never pile up: there is one slot per source and event, holding
-- the run in progress and the newest event not yet handled (a newer one
-- replaces it: it says where the source is now). At most MAX_RUNNING
-- handlers run at once; slots wait their turn in order. A handler may
-- return seconds: it is then called again that much later with the
-- source as it is then (ev.again = true), which is how a rate-limited
-- alert still reports the last change of a flapping source.

local core = require "vault.core"
local task = require "vault.task"
local config = require "config"
local log = require "log"

local M = {}

M.LIMITS = { instructions = 1000000, seconds = 30 }   -- one run of a handler
M.MAX_RUNNING = 4
M.AGAIN_MIN, M.AGAIN_MAX = 1, 86400

local slots = {}      -- "event\0id" -> { event, id, run = task, pending = ev, timer = task, queued }
local ready = {}      -- slots with a pending event waiting for a free place, in order
local running = 0
local stopped = false
M.counts = { runs = 0, failed = 0, replaced = 0 }

-- Strings of an event pass the log's scrubber: no registered secret
-- leaves in a webhook, whatever a server or a hook put in a message.
local function scrubbed(v)
  if type(v) == "string" then return core.scrub(v) end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = scrubbed(x) end
  return out
end

-- The event handlers see: a copy, theirs to keep or change.
local function make_event(event, view, arg)
  local ev = { event = event, id = view.id, name = view.name, kind = view.kind or "imap", host = view.host,
    status = view.status, error = view.error, config_error = view.config_error, at = core.now() }
  if event == "status" then ev.previous = arg
  elseif event == "error" and arg then ev.error = arg end
  return scrubbed(ev)
end

local function slot_of(event, id)
  local key = event .. "\0" .. id
  local s = slots[key]
  if not s then
    s = { key = key, event = event, id = id }
    slots[key] = s
  end
  return s
end

local function forget_if_idle(s)
  if not s.run and not s.pending and not s.timer and not s.queued then slots[s.key] = nil end
end

local start, pump

local function queue(s)
  if not s.queued then
    s.queued = true
    ready[#ready + 1] = s
  end
end

local function clean(err)
  return (tostring(err):gsub("\nstack traceback:.*", ""))
end

-- Calls the handler again after SECONDS with the source as it is then.
local function again_after(s, seconds)
  if s.timer then task.cancel(s.timer) end
  seconds = math.max(M.AGAIN_MIN, math.min(M.AGAIN_MAX, seconds))
  s.timer = task.spawn("handler-again:" .. s.event .. ":" .. s.id, function() task.sleep(seconds) end,
    function(ok)
      if not ok then return end   -- cancelled: replaced, or the engine stops
      s.timer = nil
      local rec = not stopped and require("engine").get(s.id)
      if rec and not s.pending then
        local ev = make_event(s.event, require("engine").view(rec), s.event == "error" and rec.error or nil)
        ev.again = true
        s.pending = ev
      end
      if s.pending and not s.run then queue(s) pump() end
      forget_if_idle(s)
    end)
end

local function finished(s, ok, v)
  running = running - 1
  s.run = nil
  if not ok then
    M.counts.failed = M.counts.failed + 1
    if v ~= "cancelled" then
      log.warn(s.id, "event handler failed", { event = s.event, error = clean(v) })
    end
  elseif math.type(v) ~= nil and v == v and not stopped then
    again_after(s, v)
  end
  if s.pending then queue(s) end
  pump()
  forget_if_idle(s)
end

function start(s)
  local ev = s.pending
  s.pending = nil
  local fn = config.handler(s.event)
  if not fn then return end   -- a reload took it away meanwhile
  running = running + 1
  M.counts.runs = M.counts.runs + 1
  s.run = task.spawn("handler:" .. s.event .. ":" .. s.id, function() return (fn(ev)) end,
    function(ok, v) finished(s, ok, v) end, M.LIMITS)
end

function pump()
  while running < M.MAX_RUNNING and #ready > 0 do
    local s = table.remove(ready, 1)
    s.queued = false
    if s.pending and not s.run then start(s) end
    forget_if_idle(s)
  end
end

-- From engine.emit: EVENT happened to the source VIEW shows (ARG: the old
-- status, or the error).
function M.dispatch(event, view, arg)
  if stopped or not config.handler(event) then return end
  local s = slot_of(event, view.id)
  if s.pending then M.counts.replaced = M.counts.replaced + 1 end
  s.pending = make_event(event, view, arg)
  if not s.run then queue(s) end
  pump()
end

-- The engine stops: handlers in flight are cancelled, nothing more runs.
function M.stop()
  stopped = true
  ready = {}
  for _, s in pairs(slots) do
    s.pending = nil
    if s.timer then task.cancel(s.timer) end
    if s.run then task.cancel(s.run) end
  end
end

-- For vault.config(): what is running and waiting.
function M.view()
  local pending, waiting_again = 0, 0
  for _, s in pairs(slots) do
    if s.pending then pending = pending + 1 end
    if s.timer then waiting_again = waiting_again + 1 end
  end
  return { running = running, pending = pending, again = waiting_again, runs = M.counts.runs,
    failed = M.counts.failed, replaced = M.counts.replaced }
end

return M
