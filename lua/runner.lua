-- What a source's task does while it runs. The sync strategy replaces the
-- body; until it has work, the task waits to be woken or stopped.

local task = require "vault.task"
local E = require "engine"

local M = {}

function M.run(rec)
  E.set_status(rec, rec.status == "paused" and "paused" or "importing")
  while true do
    task.suspend()
  end
end

return M
