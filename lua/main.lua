-- Entry points the C side calls: run, reload and stop for the engine, and
-- check for `emailvault check`. Wires the modules together.

local core = require "vault.core"

local M = {}

function M.run(opts)
  local E = require "engine"
  local vault = require "vault"
  _G.vault = vault
  -- No fallback: an engine whose sources cannot run must not look healthy.
  E.runner = require("runner").run
  -- Orphan blobs of a run that died between storing and recording a batch;
  -- --once leaves only after the sweep.
  local reclaim = require "reclaim"
  reclaim.start("start")
  -- An archive of the old layout moves into packs, beside archiving.
  local migrate = require "migrate"
  migrate.start()
  E.exit = function(code)
    reclaim.when_idle(function() migrate.when_idle(function() core.exit(code) end) end)
  end
  local started, err = E.start(opts)
  if not started then return nil, err end
  return true
end

function M.reload()
  return require("engine").reload("SIGHUP")
end

function M.stop()
  require("engine").stop()
  require("reclaim").stop()
  require("migrate").stop()
  return true
end

-- Validates every file of DIR. Returns the lines to print and the exit status.
function M.check(dir)
  local sources = require "sources"
  local st = core.stat(dir)
  if not st or st.type ~= "dir" then
    return { "emailvault: sources folder " .. dir .. " does not exist" }, 1
  end
  local loaded, err = sources.load_dir(dir)
  if not loaded then return { "emailvault: " .. err }, 1 end
  local lines, nproblems, good = {}, 0, {}
  for _, id in ipairs(loaded.ids) do
    if loaded.problems[id] then
      for _, p in ipairs(loaded.problems[id]) do
        lines[#lines + 1] = p
        nproblems = nproblems + 1
      end
    else
      good[#good + 1] = id
    end
  end
  if nproblems > 0 then
    lines[#lines + 1] = string.format("%d problem%s in %d of %d source file%s", nproblems,
      nproblems == 1 and "" or "s", #loaded.ids - #good, #loaded.ids, #loaded.ids == 1 and "" or "s")
    return lines, 1
  end
  if #loaded.ids == 0 then
    lines[1] = "no source files in " .. dir .. " (copy example.lua.example to NAME.lua to add one)"
  else
    lines[1] = string.format("%d source%s OK: %s", #good, #good == 1 and "" or "s", table.concat(good, ", "))
  end
  return lines, 0
end

return M
