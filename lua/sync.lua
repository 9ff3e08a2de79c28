-- The default sync strategy: which folders, in which order, what to compare,
-- when to look again. The heavy lifting (streaming bodies to blobs, hashing,
-- transactions) is conn:archive in C.
--
-- Per folder: EXAMINE (never SELECT), compare UIDVALIDITY with the archive
-- (a change re-scans the folder; content hashes keep it free of
-- duplicates), archive the UIDs above the last archived one, reconcile what
-- the server holds with what is archived or skipped.

local core = require "vault.core"
local store = require "vault.store"
local task = require "vault.task"
local log = require "log"
local E = require "engine"

local S = {}

S.IDLE_MAX = 29 * 60 - 60      -- re-issue IDLE before the 29-minute mark

S.MAX_ATTEMPTS = 3             -- passes a UID may come back without its body before it is skipped

local function folder_row(source, folder)
  return store.query("SELECT uidvalidity, last_uid, on_server FROM folders WHERE source = ? AND name = ?",
    source, folder)[1]
end

-- Counts for one folder at its current UIDVALIDITY: archived, skipped, pending.
S.folder_counts = require("status").folder_counts

local function event(source, kind, detail)
  store.exec("INSERT INTO events(at, source, kind, detail) VALUES (?, ?, ?, ?)", core.now(), source, kind, detail)
end

-- F is a folder record of conn:list() ({ name =, raw = }) or a name.
local function as_folder(f)
  if type(f) == "table" then return f end
  return { name = f }
end

-- Archives one folder's new mail; with RETRY also the UIDs earlier passes
-- did not get; WHO numbers the connection when a source uses several.
-- Returns true or nil, err.
-- With SEEN (this folder's STATUS from S.statuses), a folder whose
-- UIDVALIDITY, UIDNEXT and message count are what the archive last
-- recorded, and that owes nothing, is not EXAMINEd at all.
function S.sync_folder(rec, conn, f, progress, retry, who, seen)
  f = as_folder(f)
  local name = f.name
  if seen and S.unchanged(rec, name, seen) then
    log.debug(rec.id, "folder unchanged", { folder = name, uidnext = seen.uidnext })
    S.reconcile(rec, name, seen.uidvalidity, seen.messages)
    return true
  end
  local info, err = conn:examine(f.raw and f or name)
  if not info then
    if err.code == "NONEXISTENT" then
      log.warn(rec.id, "folder vanished before it could be read", { folder = name })
      return true
    end
    return nil, err
  end
  local uidv = info.uidvalidity or 0
  local row = folder_row(rec.id, name)
  if row and row.uidvalidity and row.uidvalidity ~= uidv then
    log.warn(rec.id, "UIDVALIDITY changed: re-scanning the folder (already archived messages are not stored twice)",
      { folder = name, old = row.uidvalidity, new = uidv })
    event(rec.id, "uidvalidity", string.format("%s: %d -> %d", name, row.uidvalidity, uidv))
    -- The UIDs owed under the old UIDVALIDITY mean nothing now: the re-scan asks for everything.
    store.exec("DELETE FROM pending WHERE source = ? AND folder = ? AND uidvalidity <> ?", rec.id, name, uidv)
  end
  store.exec("INSERT INTO folders(source, name, uidvalidity, last_uid, on_server, raw) " ..
    "VALUES (?, ?, ?, 0, ?, CAST(? AS BLOB)) " ..
    "ON CONFLICT(source, name) DO UPDATE SET " ..
    "last_uid = CASE WHEN uidvalidity = excluded.uidvalidity THEN last_uid ELSE 0 END, " ..
    "uidvalidity = excluded.uidvalidity, on_server = excluded.on_server, raw = excluded.raw",
    rec.id, name, uidv, info.exists or 0, f.raw)
  row = folder_row(rec.id, name)
  local last = row.last_uid or 0
  local exists = info.exists or 0
  local owed = retry and store.query("SELECT count(*) AS n FROM pending WHERE source = ? AND folder = ? " ..
    "AND uidvalidity = ?", rec.id, name, uidv)[1].n or 0
  -- Nothing new: the next UID the server would give is right after ours.
  if (exists > 0 and not (info.uidnext and info.uidnext <= last + 1)) or owed > 0 then
    local def = rec.def
    local res, aerr = conn:archive {
      folder = name, uidvalidity = uidv, last_uid = last, source = rec.id,
      batch = def.fetch_batch, batch_bytes = def.fetch_batch_bytes, filter = def.filter, exists = exists,
      retry_pending = retry and true or false, max_attempts = S.MAX_ATTEMPTS,
      on_progress = progress and function(p) progress(name, p) end or nil,
      on_message = E.has_listeners("message") and function(m)
        m.source = rec.id
        E.emit("message", m)
      end or nil,
    }
    if not res then return nil, aerr end
    if res.messages_done > 0 or res.pending > 0 then
      log.info(rec.id, "folder archived", { folder = name, archived = res.archived, skipped = res.skipped,
        pending = res.pending, duplicates = res.duplicates, bytes = res.bytes_done, last_uid = res.last_uid,
        connection = who })
    end
  end
  S.reconcile(rec, name, uidv, exists)
  return true
end

-- Whether STATUS says nothing happened in the folder since its last pass:
-- same UIDVALIDITY, no UID given out past the last archived one, the same
-- number of messages (an expunge changes it), and nothing owed.
function S.unchanged(rec, name, st)
  local row = folder_row(rec.id, name)
  if not (row and st.uidvalidity and st.uidnext and st.messages) then return false end
  if row.uidvalidity ~= st.uidvalidity or row.on_server ~= st.messages then return false end
  if st.uidnext > (row.last_uid or 0) + 1 and st.messages > 0 then return false end
  local owed = store.query("SELECT count(*) AS n FROM pending WHERE source = ? AND folder = ? " ..
    "AND uidvalidity = ?", rec.id, name, st.uidvalidity)[1].n
  return owed == 0
end

S.STATUS_AT_ONCE = 500   -- STATUS commands in flight at once (a LIST may name 100,000 folders)

-- STATUS of every folder, S.STATUS_AT_ONCE in one round trip
-- (conn:status_many), by folder name; nil when the connection cannot (the
-- caller then asks each folder itself).
function S.status_all(conn, folders, items)
  if #folders < 2 or not conn.status_many then return nil end
  local by_name = {}
  for first = 1, #folders, S.STATUS_AT_ONCE do
    local part, args = {}, {}
    for i = first, math.min(first + S.STATUS_AT_ONCE - 1, #folders) do
      part[#part + 1] = folders[i]
      args[#args + 1] = folders[i].raw and folders[i] or folders[i].name
    end
    local got = conn:status_many(args, items)
    if not got then return nil end
    for _, f in ipairs(part) do by_name[f.name] = got[f.raw or f.name] end
  end
  return by_name
end

-- What changed since the last pass, for S.unchanged.
function S.statuses(conn, folders)
  return S.status_all(conn, folders, "MESSAGES UIDNEXT UIDVALIDITY")
end

-- What the server holds vs archived + skipped + pending: a shortfall is never silent.
function S.reconcile(rec, name, uidv, on_server)
  local archived, skipped, pending = S.folder_counts(rec.id, name, uidv)
  rec.folder_state = rec.folder_state or {}
  local row = folder_row(rec.id, name) or {}
  rec.folder_state[name] = { on_server = on_server, archived = archived, skipped = skipped,
    pending = pending, uidvalidity = uidv, last_uid = row.last_uid or 0 }
  if archived + skipped + pending < on_server then
    local detail = string.format("%s: the server holds %d messages, %d archived, %d skipped and %d pending",
      name, on_server, archived, skipped, pending)
    log.error(rec.id, "reconciliation shortfall", { folder = name, on_server = on_server,
      archived = archived, skipped = skipped, pending = pending })
    event(rec.id, "shortfall", detail)
    if E.has_listeners("error") then
      E.emit("error", E.view(rec), { kind = "storage", message = "reconciliation shortfall: " .. detail })
    end
  end
end

-- Totals for the import's progress: STATUS of every folder up front.
local function import_totals(rec, conn, folders)
  local items = conn:has("STATUS=SIZE") and "MESSAGES SIZE" or "MESSAGES"
  local total, bytes = 0, 0
  -- many at once, else one by one
  local many = S.status_all(conn, folders, items)
  for _, f in ipairs(folders) do
    local st
    if many then st = many[f.name] else st = conn:status(f.raw and f or f.name, items) end
    if st then
      total = total + (st.messages or 0)
      bytes = bytes + (st.size or 0)
    end
  end
  return total, bytes
end

-- Errors after which the pass cannot go on with the other folders: the
-- connection is gone, the disk is full, the filter is broken.
local function stops_the_pass(conn, err)
  if err.kind == "storage" or err.kind == "hook" then return true end
  local info = conn:info()
  return not info.open
end

-- The connections of a pass: the source's own, and with POOL ({ size =,
-- connect = fn, error_of = fn }) size - 1 more, each in a task of its own.
-- Every connection takes the next folder not yet taken; a failure that
-- stops the pass stops the others from taking more (each finishes the
-- folder it has) and is the pass's error. Returns true or nil, err.
local function run_connections(rec, conn, folders, pool, sync_one)
  local next_folder, stopped, live, waiting = 1, nil, 0, false
  local me = task.current()
  local children = {}
  -- The source stopped (reload, shutdown) while a pass runs: the other
  -- connections go with it (their tasks close their connections).
  local guard <close> = setmetatable({}, { __close = function()
    for _, h in ipairs(children) do task.cancel(h) end
  end })
  local function take()
    if stopped or rec.stop_requested then return nil end
    local f = folders[next_folder]
    next_folder = next_folder + 1
    return f
  end
  local function work(c, who)
    while true do
      local f = take()
      if not f then return true end
      local err = sync_one(c, f, who)
      if err then
        stopped = stopped or err
        return nil, err
      end
    end
  end
  local extra = pool and math.min(pool.size, #folders) - 1 or 0
  for k = 2, extra + 1 do
    live = live + 1
    children[#children + 1] = task.spawn("source:" .. rec.id .. ":" .. k, function()
      local c, err = pool.connect()
      if not c then
        err.message = string.format("connection %d of %d: %s (providers cap connections per account: " ..
          "lower `connections` if this persists)", k, pool.size, tostring(err.message))
        stopped = stopped or err
        return
      end
      local cc <close> = c
      log.debug(rec.id, "connection opened", { connection = k })
      if work(c, k) then c:logout() end
    end, function(ok, err)
      live = live - 1
      if not ok and err ~= "cancelled" then stopped = stopped or pool.error_of(err) end
      if waiting then task.wake(me) end
    end)
  end
  work(conn, 1)
  while live > 0 do
    waiting = true
    task.suspend()
    waiting = false
  end
  if stopped then return nil, stopped end
  if rec.stop_requested then return nil, { kind = "protocol", message = "stopped" } end
  return true
end

-- One pass over FOLDERS: every folder is tried, a failing one is reported
-- and does not keep the others from being archived. The import pass uses
-- POOL's connections (see run_connections); later passes the one CONN.
-- Returns true or nil, err.
function S.pass(rec, conn, folders, pool)
  local importing = rec.status == "importing"
  local p = { started = core.monotonic(), done0 = 0, bytes0 = 0 }
  if importing then
    p.total, p.bytes_total = import_totals(rec, conn, folders)
    local d = store.query("SELECT count(*) AS n FROM locations WHERE source = ?", rec.id)[1].n
      + store.query("SELECT count(*) AS n FROM skipped WHERE source = ?", rec.id)[1].n
    p.done0 = d
    rec.progress = { messages_done = d, messages_total = p.total, bytes_done = 0,
      bytes_total = p.bytes_total > 0 and p.bytes_total or nil, rate = 0 }
  end
  -- One progress for the source, summed over the folders being read.
  local done_sum, bytes_sum, seen = 0, 0, {}
  local function progress(name, jp)
    local was = seen[name] or { m = 0, b = 0 }
    done_sum = done_sum + jp.messages_done - was.m
    bytes_sum = bytes_sum + jp.bytes_done - was.b
    seen[name] = { m = jp.messages_done, b = jp.bytes_done }
    local done = p.done0 + done_sum
    local elapsed = core.monotonic() - p.started
    local rate = elapsed > 0 and (done - p.done0) / elapsed or 0
    rec.progress = {
      messages_done = done, messages_total = math.max(p.total or 0, done),
      bytes_done = bytes_sum, bytes_total = p.bytes_total and p.bytes_total > 0 and p.bytes_total or nil,
      rate = rate, eta = rate > 0 and math.max(0, ((p.total or 0) - done) / rate) or nil,
    }
    E.save(rec)
  end
  local failed = {}
  local multi = importing and pool and pool.size > 1
  -- A later pass asks what changed first, in one round trip.
  local seen = not importing and S.statuses(conn, folders) or nil
  -- nil, or the error that stops the pass
  local function sync_one(c, f, who)
    local ok, err = S.sync_folder(rec, c, f, importing and progress or nil, true, multi and who or nil,
      seen and seen[f.name])
    if ok then return nil end
    if stops_the_pass(c, err) then return err end
    failed[#failed + 1] = { folder = f.name, err = err }
    log.error(rec.id, "folder failed; the pass goes on with the other folders",
      { folder = f.name, kind = err.kind, error = err.message })
    event(rec.id, "folder_error", f.name .. ": " .. tostring(err.message))
  end
  local ok, err = run_connections(rec, conn, folders, multi and pool or nil, sync_one)
  if not ok then return nil, err end
  rec.last_sync = core.now()
  if #failed > 0 then
    local first = failed[1]
    local names = {}
    for i, x in ipairs(failed) do names[i] = x.folder end
    local msg = #failed == 1 and string.format("folder %s: %s", first.folder, first.err.message) or
      string.format("%d folders failed (%s); %s: %s", #failed, table.concat(names, ", "), first.folder,
        first.err.message)
    return nil, { kind = first.err.kind, code = first.err.code, folders = names,
      message = msg .. " (the other folders were archived; if a folder can never be read, " ..
        "exclude it: folders = { exclude = { ... } })" }
  end
  return true
end

-- Continuous sync: IDLE on INBOX (new mail archived within seconds), the
-- other folders polled every `poll` seconds. Returns only on error.
function S.follow(rec, conn, folders)
  local inbox
  for _, f in ipairs(folders) do if f.name:upper() == "INBOX" then inbox = f end end
  local poll = rec.def.poll or 300
  while true do
    local deadline = core.monotonic() + poll
    if inbox and conn:has("IDLE") then
      local ok, err = S.sync_folder(rec, conn, inbox)
      if not ok then return nil, err end
      while core.monotonic() < deadline and not rec.sync_requested do
        rec.conn = conn
        local ev, ierr = conn:idle(math.min(deadline - core.monotonic(), S.IDLE_MAX))
        rec.conn = nil
        if not ev then return nil, ierr end
        if #ev > 0 then
          ok, err = S.sync_folder(rec, conn, inbox)
          if not ok then return nil, err end
          rec.last_sync = core.now()
          E.save(rec)
        end
      end
    else
      rec.suspended = true
      task.suspend(poll)
      rec.suspended = false
    end
    rec.sync_requested = false
    local ok, err = S.pass(rec, conn, folders)
    if not ok then return nil, err end
    E.save(rec)
  end
end

return S
