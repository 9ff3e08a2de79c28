-- An archive of the old layout (one file per message) is moved into the
-- pack store by the engine itself, a step of messages per loop turn, while
-- it goes on archiving (src/store/migrate.c). Interrupted, it goes on at
-- the next start; until a message is moved it is read from its file.

local core = require "vault.core"
local task = require "vault.task"
local store = require "vault.store"
local log = require "log"

local M = { step = tonumber(core.getenv("EMAILVAULT_MIGRATE_STEP") or "") or 100, running = nil }
local idle_waiters = {}

-- FN runs once no migration is running (--once leaves only after it).
function M.when_idle(fn)
  if M.running then idle_waiters[#idle_waiters + 1] = fn else fn() end
end

local function idle()
  local w = idle_waiters
  idle_waiters = {}
  for _, fn in ipairs(w) do fn() end
end

function M.start()
  local left = store.query("SELECT count(*) AS n FROM messages WHERE pack_segment IS NULL")[1].n
  if left == 0 or M.running then return end
  log.info(nil, "moving the archive into packs", { messages = left })
  local total = { moved = 0, bytes = 0, missing = 0, corrupt = 0 }
  local t0 = core.monotonic()
  M.running = task.spawn("migrate", function()
    while true do
      local looked, c = store.migrate_step(M.step)
      for k in pairs(total) do total[k] = total[k] + c[k] end
      if looked == 0 then break end
      coroutine.yield()   -- the loop runs between steps
    end
  end, function(ok, err)
    M.running = nil
    if ok then idle() end
    local fields = { moved = total.moved, bytes = total.bytes,
      seconds = string.format("%.1f", core.monotonic() - t0) }
    if not ok then
      if err ~= "cancelled" then
        fields.error = err
        log.error(nil, "moving the archive into packs stopped (it goes on at the next start)", fields)
      end
      return
    end
    if total.missing + total.corrupt > 0 then
      fields.missing, fields.corrupt = total.missing, total.corrupt
      log.warn(nil, "archive moved into packs, but some messages' files are missing or damaged " ..
        "(they stay where they are: run emailvault verify)", fields)
    else
      log.info(nil, "archive moved into packs", fields)
    end
  end)
end

function M.stop()
  idle_waiters = {}
  if M.running then task.cancel(M.running) end
end

return M
