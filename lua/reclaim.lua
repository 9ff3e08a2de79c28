-- Orphan blobs (published, never recorded: a crash between the two) are
-- removed by a sweep (src/store/reclaim.c) that runs in small steps with a
-- loop turn between them, so a large archive never stalls the engine. The
-- engine starts one when it starts; vault.reclaim() runs one and waits.
--
-- At most one sweep runs. A caller joins a sweep only if it has not begun
-- yet, so every orphan that existed when vault.reclaim() was called is
-- looked at.

local core = require "vault.core"
local task = require "vault.task"
local store = require "vault.store"
local log = require "log"

local M = {
  step = 256,   -- directory entries per step
  pause = 0,    -- seconds between steps (0: the next loop turn)
}

-- EMAILVAULT_RECLAIM_PACE=STEP:SECONDS slows sweeps down, for tests that
-- make one overlap with archiving.
do
  local step, pause = (core.getenv("EMAILVAULT_RECLAIM_PACE") or ""):match("^(%d+):([%d.]+)$")
  if step then M.step, M.pause = math.max(1, tonumber(step)), tonumber(pause) end
end

local running, queued   -- sweeps: { reason, waiters = { task }, done, ok, result }
local idle_waiters = {} -- functions to call once no sweep is left
local stopped = false

local function sweep(run)
  local sw <close> = store.sweep()
  while true do
    local state = sw:step(M.step)
    if state == "done" then break end
    task.sleep(M.pause)
  end
  local c = sw:counts()
  local fields = { reason = run.reason, scanned = c.scanned, reclaimed = c.reclaimed,
    bytes = c.bytes }
  if c.failed > 0 then
    fields.failed = c.failed
    log.warn(nil, "orphan sweep done; some orphan blobs could not be removed", fields)
  else
    log.info(nil, "orphan sweep done", fields)
  end
  return c
end

local function launch(run)
  running = run
  run.task = task.spawn("reclaim", function() return sweep(run) end, function(ok, res)
    running = nil
    run.done, run.ok, run.result = true, ok, res
    if not ok and res ~= "cancelled" then
      log.error(nil, "orphan sweep failed", { reason = run.reason, error = res })
    end
    for _, w in ipairs(run.waiters) do task.wake(w) end
    if queued and not stopped then
      local q = queued
      queued = nil
      launch(q)
      return
    end
    local fns = idle_waiters
    idle_waiters = {}
    for _, fn in ipairs(fns) do fn() end
  end)
end

-- A sweep in the background unless one runs or waits to run.
function M.start(reason)
  if stopped or running or queued then return end
  launch { reason = reason, waiters = {} }
end

-- A complete sweep, waited for (in a task): its counts, or nil, message.
function M.run(reason)
  local me = task.current()
  if not me then
    error("vault.reclaim must be called from a task (an eval or REPL chunk, or vault.task.spawn)", 3)
  end
  if stopped then return nil, "the engine is stopping" end
  local run = queued
  if not run then
    run = { reason = reason or "vault.reclaim", waiters = {} }
    if running then queued = run else launch(run) end
  end
  run.waiters[#run.waiters + 1] = me
  repeat task.suspend() until run.done
  if not run.ok then return nil, tostring(run.result) end
  return run.result
end

-- Calls FN once no sweep runs or waits (--once leaves only then).
function M.when_idle(fn)
  if running or queued then idle_waiters[#idle_waiters + 1] = fn else fn() end
end

-- Engine shutdown: the running sweep is cancelled (its directory handles
-- closed); what it did not reach waits for the next start.
function M.stop()
  stopped = true
  queued = nil
  idle_waiters = {}
  if running and running.task then task.cancel(running.task) end
end

return M
