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
  -- emailvault.lua's event handlers run as tasks.
  E.dispatch = require("events").dispatch
  E.wants = function(name) return require("config").handler(name) ~= nil end
  -- Orphan blobs of a run that died between storing and recording a batch;
  -- --once leaves only after the sweep.
  local reclaim = require "reclaim"
  reclaim.start("start")
  -- An archive of the old layout moves into packs, beside archiving.
  local migrate = require "migrate"
  migrate.start()
  -- emailvault.lua's serve = imap{...}: the IMAP view follows the file.
  E.on_config = function(result)
    if result == "loaded" or result == "none" then
      local cur = require("config").current
      require("serve").apply(cur and cur.serve)
    end
  end
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
  require("events").stop()
  require("serve").stop()
  require("engine").stop()
  require("reclaim").stop()
  require("migrate").stop()
  return true
end

-- The lines `check` prints about the engine configuration file at PATH,
-- and how many problems it has.
local function check_config(path, required)
  local def, problems = require("config").load(path, required)
  if not def then
    local n = #problems
    problems[#problems + 1] = string.format("%d problem%s in the engine configuration file %s", n,
      n == 1 and "" or "s", path)
    return problems, n
  end
  if def.missing then return { "no engine configuration file " .. path .. " (it is optional)" }, 0 end
  local names = {}
  for _, e in ipairs(require("config").ON.order) do if def.on[e] then names[#names + 1] = e end end
  local serving = ""
  if def.serve then
    local n = 0
    for _ in pairs(def.serve.users) do n = n + 1 end
    serving = string.format("; IMAP view on %s for %d user%s", def.serve.listen, n, n == 1 and "" or "s")
  end
  return { string.format("engine configuration %s OK (handlers: %s)%s", path,
    #names > 0 and table.concat(names, ", ") or "none", serving) }, 0
end

-- Validates every file of DIR and the engine configuration file CONFIG.
-- Returns the lines to print and the exit status.
function M.check(dir, config, config_required)
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
  local clines, cproblems = {}, 0
  if config then clines, cproblems = check_config(config, config_required) end
  if nproblems > 0 or cproblems > 0 then
    if nproblems > 0 then
      lines[#lines + 1] = string.format("%d problem%s in %d of %d source file%s", nproblems,
        nproblems == 1 and "" or "s", #loaded.ids - #good, #loaded.ids, #loaded.ids == 1 and "" or "s")
    end
    if cproblems > 0 then
      for _, l in ipairs(clines) do lines[#lines + 1] = l end
    end
    return lines, 1
  end
  if #loaded.ids == 0 then
    lines[1] = "no source files in " .. dir .. " (copy example.lua.example to NAME.lua to add one)"
  else
    lines[1] = string.format("%d source%s OK: %s", #good, #good == 1 and "" or "s", table.concat(good, ", "))
  end
  for _, l in ipairs(clines) do lines[#lines + 1] = l end
  return lines, 0
end

return M
