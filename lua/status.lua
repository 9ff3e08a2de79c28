-- `emailvault status`: every source as archive.db last recorded it, so it
-- works with or without a running engine.

local store = require "vault.store"
local json = require "json"

local M = {}

-- Archived, skipped and pending (owed by the server) messages of one folder
-- at its current UIDVALIDITY.
function M.folder_counts(id, folder, uidvalidity)
  local function count(tbl)
    -- pcall: an archive of an older schema opened read-only has no pending table.
    local ok, rows = pcall(store.query, "SELECT count(*) AS n FROM " .. tbl ..
      " WHERE source = ? AND folder = ? AND uidvalidity = ?", id, folder, uidvalidity)
    if not ok then
      if tbl == "pending" then return 0 end
      error(rows, 0)
    end
    return rows[1].n
  end
  return count("locations"), count("skipped"), count("pending")
end

-- Messages of source ID archived but not in the full-text index yet.
function M.index_lag(id)
  local ok, lag = pcall(function() return require("archive").lag(id) end)
  return ok and lag or nil
end

-- Every folder of source ID as vault.status shows it, and the totals.
function M.folders_of(id)
  local folders, archived, skipped, pending = {}, 0, 0, 0
  for _, f in ipairs(store.query("SELECT name, uidvalidity, last_uid, on_server FROM folders WHERE source = ?", id)) do
    local a, s, p = M.folder_counts(id, f.name, f.uidvalidity)
    folders[f.name] = { on_server = f.on_server, archived = a, skipped = s, pending = p,
      uidvalidity = f.uidvalidity, last_uid = f.last_uid }
    archived, skipped, pending = archived + a, skipped + s, pending + p
  end
  return folders, archived, skipped, pending
end

-- Records shaped like vault.status(id).
function M.records()
  local out = {}
  for _, r in ipairs(store.query("SELECT * FROM sources ORDER BY id")) do
    local rec = { id = r.id, name = r.name, status = r.status, last_sync = r.last_sync }
    if r.error_kind then
      rec.error = { kind = r.error_kind, message = r.error_message, code = r.error_code, at = r.error_at,
        attempt = r.error_attempt, next_retry = r.next_retry }
    end
    if r.status == "importing" and r.progress then rec.progress = json.decode(r.progress) end
    rec.folders, rec.archived, rec.skipped, rec.pending = M.folders_of(r.id)
    rec.index_lag = M.index_lag(r.id)
    out[#out + 1] = rec
  end
  return out
end

local function ago(t, now)
  local d = now - t
  if d < 90 then return string.format("%ds ago", math.floor(d)) end
  if d < 5400 then return string.format("%d min ago", math.floor(d / 60)) end
  if d < 172800 then return string.format("%.1f h ago", d / 3600) end
  return string.format("%d days ago", math.floor(d / 86400))
end

local function progress_text(rec, now)
  local p = rec.progress
  if rec.status == "importing" and p then
    local s = string.format("%d/%d messages", p.messages_done or 0, p.messages_total or 0)
    if (p.messages_total or 0) > 0 then
      s = s .. string.format(" (%d%%)", math.floor(100 * (p.messages_done or 0) / p.messages_total))
    end
    if p.rate and p.rate > 0 then s = s .. string.format(", %.0f/s", p.rate) end
    if p.eta then s = s .. string.format(", ETA %ds", math.floor(p.eta)) end
    return s
  end
  if rec.last_sync then
    return "last sync " .. os.date("!%Y-%m-%d %H:%M:%SZ", math.floor(rec.last_sync)) .. " (" .. ago(rec.last_sync, now) .. ")"
  end
  return "-"
end

local function error_text(rec, now)
  local e = rec.error
  if not e then return "" end
  local s = e.kind .. ": " .. (e.message or "")
  if #s > 100 then s = s:sub(1, 97) .. "..." end
  if e.next_retry then
    s = s .. string.format(" (attempt %d, retry in %ds)", e.attempt or 0, math.max(0, math.floor(e.next_retry - now)))
  elseif e.attempt then
    s = s .. string.format(" (attempt %d, waiting for a fix or resume)", e.attempt)
  end
  return s
end

function M.table(records, now)
  local rows = { { "ID", "NAME", "STATUS", "ARCHIVED", "NOT INDEXED", "PROGRESS / LAST SYNC", "ERROR" } }
  for _, r in ipairs(records) do
    rows[#rows + 1] = { r.id, r.name or r.id, r.status or "-", tostring(r.archived or 0),
      r.index_lag and tostring(r.index_lag) or "-", progress_text(r, now), error_text(r, now) }
  end
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do widths[i] = math.max(widths[i] or 0, utf8.len(cell) or #cell) end
  end
  local lines = {}
  for _, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
      cells[i] = i < #row and cell .. string.rep(" ", widths[i] - (utf8.len(cell) or #cell)) or cell
    end
    lines[#lines + 1] = (table.concat(cells, "  "):gsub("%s+$", ""))
  end
  return table.concat(lines, "\n")
end

-- RECS: the running engine's live records (vault.sources()); without an
-- engine, what archive.db last recorded.
function M.print(as_json, now, recs)
  recs = recs or M.records()
  if as_json then return json.output(recs) end
  if #recs == 0 then return "no source has been recorded in this archive yet" end
  return M.table(recs, now)
end

return M
