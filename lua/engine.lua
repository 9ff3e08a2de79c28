-- The engine's source lifecycle: load sources.d/, start a task per source,
-- apply the difference on reload, stop everything on shutdown. Policy lives
-- here; sockets, files and the event loop are C's.

local core = require "vault.core"
local task = require "vault.task"
local vm = require "vault.vm"
local sources = require "sources"
local log = require "log"

local store_ok, store = pcall(require, "vault.store")
local json = require "json"

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

-- ---- events: vault.on(name, fn) ----------------------------------------
E.listeners = { status = {}, error = {}, message = {} }

function E.on(name, fn)
  local list = E.listeners[name]
  if not list then error("unknown event '" .. tostring(name) .. "' (status, error or message)", 3) end
  if type(fn) ~= "function" then error("vault.on expects a function", 3) end
  list[#list + 1] = fn
  return function()   -- unsubscribe
    for i, f in ipairs(list) do if f == fn then table.remove(list, i) return end end
  end
end

-- Someone to tell: a vault.on listener or a handler of emailvault.lua
-- (E.wants, set by main.lua).
function E.has_listeners(name)
  return #E.listeners[name] > 0 or (E.wants ~= nil and E.wants(name) and true or false)
end

-- Handlers are the operator's code, but one that never returns would stop
-- the whole engine: each call has the budget of a hook, and cannot wait.
E.HANDLER_BUDGET, E.HANDLER_SECONDS = 1000000, 2

function E.emit(name, ...)
  for _, fn in ipairs(E.listeners[name]) do
    local ok, err = vm.budget_pcall(E.HANDLER_BUDGET, E.HANDLER_SECONDS, fn, ...)
    if not ok then
      log.warn(nil, "event handler failed", { event = name, error = (err:gsub("\nstack traceback:.*", "")) })
    end
  end
  -- emailvault.lua's handlers, as tasks (lua/events.lua)
  if E.dispatch then E.dispatch(name, ...) end
end

-- ---- persistence in archive.db ------------------------------------------
local function db_ready() return store_ok and store.is_open() end

-- Writes what `emailvault status` shows, with or without the engine.
function E.save(rec)
  if not db_ready() then return end
  local err = rec.error or {}
  local ok, perr = pcall(store.exec,
    "INSERT INTO sources(id, name, status, paused, import_done, error_kind, error_message, error_code, " ..
    "error_at, error_attempt, next_retry, last_sync, progress, updated) " ..
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET " ..
    "name = excluded.name, status = excluded.status, paused = excluded.paused, " ..
    "import_done = excluded.import_done, error_kind = excluded.error_kind, " ..
    "error_message = excluded.error_message, error_code = excluded.error_code, " ..
    "error_at = excluded.error_at, error_attempt = excluded.error_attempt, " ..
    "next_retry = excluded.next_retry, last_sync = excluded.last_sync, " ..
    "progress = excluded.progress, updated = excluded.updated",
    rec.id, (rec.def and rec.def.name) or rec.id, rec.status, rec.paused and 1 or 0,
    rec.import_done and 1 or 0, err.kind, err.message, err.code, err.at, err.attempt,
    err.next_retry, rec.last_sync, rec.progress and json.encode(rec.progress) or nil, core.now())
  if not ok then log.error(rec.id, "cannot save the source's status", { error = perr }) end
end

-- What archive.db remembers of a source across restarts.
local function restore(rec)
  if not db_ready() then return end
  local row = store.query("SELECT paused, import_done, last_sync FROM sources WHERE id = ?", rec.id)[1]
  if row then
    rec.paused = row.paused == 1
    rec.import_done = row.import_done == 1
    rec.last_sync = row.last_sync
  end
end

function E.set_status(rec, status, err)
  local old = rec.status
  -- A server may quote a password back in any answer: the error is kept,
  -- shown and saved as the log would write it.
  if err and type(err.message) == "string" then err.message = core.scrub(err.message) end
  rec.status = status
  rec.error = err
  rec.status_changed = core.now()
  if old ~= status then
    local fields = { from = old or "-", to = status }
    if err then fields.kind = err.kind; fields.error = err.message end
    log.info(rec.id, "status", fields)
  end
  E.save(rec)
  -- The view counts the source's messages: only for someone listening.
  if old ~= status and E.has_listeners("status") then E.emit("status", E.view(rec), old) end
  if err and E.has_listeners("error") then E.emit("error", E.view(rec), err) end
end

local function start(rec)
  if rec.paused then
    E.set_status(rec, "paused")
    return
  end
  rec.generation = (rec.generation or 0) + 1
  rec.started_at = core.now()
  if rec.status ~= "error" then E.set_status(rec, rec.import_done and "active" or "importing") end
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
      if E.opts.once then E.finished(rec, false) end
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
  -- emailvault.lua first: its handlers then see this reload's events.
  local config_result = E.opts.config_file and
    require("config").reload(E.opts.config_file, E.opts.config_required)
  if reason == "start" then
    -- before any source: where their messages go must work first
    local ok, kind, msg = require("storage").start(require("config").current)
    if not ok then
      E.start_error = "storage (" .. tostring(kind) .. "): " .. tostring(msg)
      return nil, E.start_error
    end
  end
  -- the IMAP view reads the store: after the storage started
  if config_result and E.on_config then E.on_config(config_result) end
  local dir = E.opts.sources_dir
  local loaded, err = sources.load_dir(dir)
  if not loaded then
    -- Never stop running sources because the folder cannot be read now.
    log.error(nil, "reload failed: cannot read the sources folder; running sources are kept",
      { error = err })
    return nil, err
  end
  local sum = { added = {}, removed = {}, changed = {}, unchanged = {}, failed = {}, config = config_result }
  local seen = {}
  for _, id in ipairs(loaded.ids) do
    seen[id] = true
    local def, problems = loaded.defs[id], loaded.problems[id]
    local rec = E.records[id]
    if def then
      if not rec then
        rec = { id = id, file = def.file, def = def }
        E.records[id] = rec
        restore(rec)
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
        restore(rec)
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
    failed = list_or_dash(sum.failed), config = sum.config,
  })
  if E.on_reload then E.on_reload(sum) end
  return sum
end

-- Leaves the engine (--once); main.lua lets background work finish first.
function E.exit(code) core.exit(code) end

function E.start(opts)
  E.opts = opts
  local st = core.stat(opts.sources_dir)
  if not st or st.type ~= "dir" then
    log.error(nil, "the sources folder does not exist", { path = opts.sources_dir,
      hint = "create it, or pass --sources DIR" })
    return nil, "sources folder " .. opts.sources_dir .. " does not exist"
  end
  log.info(nil, "engine started", { pid = core.pid(), sources = opts.sources_dir, data = opts.data_dir,
    config = opts.config_file })
  E.reload("start")
  if E.start_error then return nil, E.start_error end
  if opts.once then
    -- Nothing will run (no source, all broken or paused): done already.
    local running = false
    for _, r in pairs(E.records) do if r.task then running = true end end
    if not running then
      local broken = false
      for _, r in pairs(E.records) do if not r.def then broken = true end end
      log.info(nil, "one pass done: no source to run", { result = broken and "error" or "ok" })
      E.exit(broken and 1 or 0)
    end
  end
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

-- --once: a source's pass ended; the engine exits when every source's has.
function E.finished(rec, ok)
  rec.once_result = ok
  if not E.opts.once then return end
  local all_ok = true
  for _, r in pairs(E.records) do
    if r.def and not r.paused and r.once_result == nil then return end
    if r.once_result == false or (not r.def) then all_ok = false end
  end
  log.info(nil, "one pass done", { result = all_ok and "ok" or "error" })
  E.exit(all_ok and 0 or 1)
end

local function need(id)
  if type(id) ~= "string" then error("expected a source id (string)", 3) end
  local rec = E.records[id]
  if not rec then error("no source with id '" .. id .. "'", 3) end
  return rec
end

function E.pause(id)
  local rec = need(id)
  rec.paused = true
  stop(rec, "paused")
  E.set_status(rec, "paused")
  return true
end

function E.resume(id)
  local rec = need(id)
  local was = rec.paused
  rec.paused = false
  if rec.def and (was or rec.status == "error") then
    stop(rec, "resumed")
    rec.error = nil
    E.set_status(rec, rec.import_done and "active" or "importing")
    start(rec)
  end
  E.save(rec)
  return true
end

function E.sync_now(id)
  local rec = need(id)
  if rec.paused then return nil, "source '" .. id .. "' is paused (vault.resume it first)" end
  if not rec.task then return nil, "source '" .. id .. "' is not running" end
  rec.sync_requested = true
  if rec.conn then rec.conn:wakeup() end
  if rec.suspended then task.wake(rec.task) end
  return true
end

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
    tls = def.tls, last_sync = rec.last_sync,
    progress = rec.status == "importing" and rec.progress or nil,
  }
  if db_ready() then
    local status = require "status"
    v.folders, v.archived, v.skipped, v.pending = status.folders_of(rec.id)
    v.index_lag = status.index_lag(rec.id)
  end
  if E.decorate then E.decorate(rec, v) end
  return v
end

return E
