-- The engine's source lifecycle: load sources.d/, start a task per source,
-- apply the difference on reload, stop everything on shutdown. Policy lives
-- here; sockets, files and the event loop are C's.

local core = require "vault.core"
local task = require "vault.task"
local sources = require "sources"
local log = require "log"

local E = {
  records = {},     -- id -> record
  opts = {},
  stopping = false,
  runner = nil,     -- function(rec) run inside the source's task
}

local function sorted_ids(t)
  local ids = {}
  for id in pairs(t) do ids[#ids + 1] = id end
  table.sort(ids)
  return ids
end

local function list_or_dash(ids)
  return #ids > 0 and table.concat(ids, ",") or "-"
end

function E.set_status(rec, status, err)
  local old = rec.status
  rec.status = status
  rec.error = err
  rec.status_changed = core.now()
  if old ~= status then
    local fields = { from = old or "-", to = status }
    if err then fields.kind = err.kind; fields.error = err.message end
    log.info(rec.id, "status", fields)
  end
  if E.on_status then E.on_status(rec, old) end
end

local function start(rec)
  rec.generation = (rec.generation or 0) + 1
  rec.started_at = core.now()
  log.info(rec.id, "source started", { generation = rec.generation, file = rec.file,
    host = rec.def.host, port = rec.def.port })
  local runner = E.runner or function() task.suspend() end
  local gen = rec.generation
  rec.task = task.spawn("source:" .. rec.id, function() return runner(rec) end, function(ok, err)
    if rec.generation ~= gen then return end
    rec.task = nil
    if not ok and err ~= "cancelled" then
      log.error(rec.id, "source task failed", { error = err })
      E.set_status(rec, "error", { kind = "internal", message = tostring(err), at = core.now() })
    end
    if E.on_task_end then E.on_task_end(rec, ok, err) end
  end)
end

local function stop(rec, why)
  if rec.task then
    local t = rec.task
    rec.task = nil
    task.cancel(t)
    log.info(rec.id, "source stopped", { reason = why, generation = rec.generation })
  end
end

-- Re-reads the sources folder and applies the difference. Returns a summary
-- { added = {...}, removed = {...}, changed = {...}, unchanged = {...}, failed = {...} }.
function E.reload(reason)
  if E.stopping then return nil, "the engine is stopping" end
  local dir = E.opts.sources_dir
  local loaded, err = sources.load_dir(dir)
  if not loaded then
    -- Never stop running sources because the folder cannot be read now.
    log.error(nil, "reload failed: cannot read the sources folder; running sources are kept",
      { error = err })
    return nil, err
  end
  local sum = { added = {}, removed = {}, changed = {}, unchanged = {}, failed = {} }
  local seen = {}
  for _, id in ipairs(loaded.ids) do
    seen[id] = true
    local def, problems = loaded.defs[id], loaded.problems[id]
    local rec = E.records[id]
    if def then
      if not rec then
        rec = { id = id, file = def.file, def = def }
        E.records[id] = rec
        sum.added[#sum.added + 1] = id
        start(rec)
      elseif not rec.def or rec.def.text ~= def.text then
        stop(rec, "changed")
        rec.def, rec.file = def, def.file
        rec.config_error, rec.config_errors = nil, nil
        sum.changed[#sum.changed + 1] = id
        start(rec)
      else
        rec.config_error, rec.config_errors = nil, nil
        sum.unchanged[#sum.unchanged + 1] = id
      end
    else
      sum.failed[#sum.failed + 1] = id
      for _, p in ipairs(problems) do log.error(id, "source file rejected", { problem = p }) end
      if not rec then
        rec = { id = id, file = loaded.files[id] }
        E.records[id] = rec
      end
      rec.config_error = problems[1]
      rec.config_errors = problems
      if not rec.def then
        E.set_status(rec, "error", { kind = "config", message = problems[1], at = core.now() })
      else
        log.warn(id, "keeping the last good definition running", { generation = rec.generation })
      end
    end
  end
  for _, id in ipairs(sorted_ids(E.records)) do
    if not seen[id] then
      stop(E.records[id], "removed")
      E.records[id] = nil
      sum.removed[#sum.removed + 1] = id
    end
  end
  log.info(nil, "sources reloaded", {
    reason = reason or "reload",
    added = list_or_dash(sum.added), removed = list_or_dash(sum.removed),
    changed = list_or_dash(sum.changed), unchanged = list_or_dash(sum.unchanged),
    failed = list_or_dash(sum.failed),
  })
  if E.on_reload then E.on_reload(sum) end
  return sum
end

function E.start(opts)
  E.opts = opts
  local st = core.stat(opts.sources_dir)
  if not st or st.type ~= "dir" then
    log.error(nil, "the sources folder does not exist", { path = opts.sources_dir,
      hint = "create it, or pass --sources DIR" })
    return nil, "sources folder " .. opts.sources_dir .. " does not exist"
  end
  log.info(nil, "engine started", { pid = core.pid(), sources = opts.sources_dir, data = opts.data_dir })
  E.reload("start")
  if next(E.records) == nil then
    log.warn(nil, "no source is configured: copy " .. opts.sources_dir ..
      "/example.lua.example to " .. opts.sources_dir ..
      "/NAME.lua (one file per mail account), edit it, then reload with: kill -HUP " .. core.pid())
  end
  return true
end

function E.stop()
  if E.stopping then return end
  E.stopping = true
  for _, id in ipairs(sorted_ids(E.records)) do stop(E.records[id], "shutdown") end
  log.info(nil, "engine stopped")
end

function E.get(id) return E.records[id] end

-- The public view of every record, sorted by id.
function E.list()
  local out = {}
  for _, id in ipairs(sorted_ids(E.records)) do out[#out + 1] = E.view(E.records[id]) end
  return out
end

function E.view(rec)
  local def = rec.def or {}
  local err = rec.error
  if err then
    local copy = {}
    for k, v in pairs(err) do copy[k] = v end
    err = copy
  end
  local v = {
    id = rec.id, name = def.name or rec.id, file = rec.file, status = rec.status,
    error = err, config_error = rec.config_error, generation = rec.generation,
    started_at = rec.started_at, host = def.host, port = def.port, username = def.username,
    tls = def.tls,
  }
  if E.decorate then E.decorate(rec, v) end
  return v
end

return E
