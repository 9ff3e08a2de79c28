-- Reading the archive: vault.search, vault.message, vault.export and the
-- index's state, for the engine, `repl --offline`, and the commands
-- `emailvault search` and `show`. The work is vault.archive in C; here are
-- the defaults, the output for people, and the stepping of long exports.

local archive = require "vault.archive"
local json = require "json"

local A = {}

local function check_query(q, what)
  if q ~= nil and type(q) ~= "string" then error(what .. " expects a query string", 3) end
  return q or ""
end

-- vault.search(query [, { limit = 20, offset = 0 }]): best match first, then newest
-- -> hits | nil, err, column
function A.search(query, opts)
  query = check_query(query, "vault.search")
  if opts ~= nil and type(opts) ~= "table" then error("vault.search: opts must be a table", 2) end
  local hits, err, col = archive.search(query, opts)
  if not hits then return nil, err, col end
  return hits
end

-- vault.message(id [, { raw = true, text = false }]) -> record | nil, err
function A.message(id, opts)
  if type(id) ~= "string" then error("vault.message expects a message id (string)", 2) end
  opts = opts or {}
  return archive.message(id, { raw = opts.raw, text = opts.text ~= false })
end

-- vault.write_message(id, file [, "raw" | "headers"]) -> bytes written | nil, err
-- The message's bytes into an io file, in bounded memory whatever its size.
function A.write_message(id, file, part)
  if type(id) ~= "string" then error("vault.write_message expects a message id (string)", 2) end
  if io.type(file) ~= "file" then error("vault.write_message expects an open io file", 2) end
  return archive.write(id, file, part)
end

-- Runs an export to the end; in a task it yields between steps so the
-- engine goes on archiving. Returns the number of messages written.
function A.export(query, path, format, opts)
  query = check_query(query, "vault.export")
  if type(path) ~= "string" or path == "" then error("vault.export expects a path", 2) end
  opts = opts or {}
  local x, total_or_err, col = archive.exporter(query, { format = format or "mbox", out = path,
    by_folder = opts.by_folder })
  if not x then
    if col then return nil, string.format("%s (column %d)", total_or_err, col) end
    return nil, total_or_err
  end
  local task_ok, task = pcall(require, "vault.task")
  local in_task = task_ok and task.current() ~= nil
  while true do
    local done, finished = x:step(200)
    if opts.progress then opts.progress(done, total_or_err) end
    if finished then return done end
    if in_task then coroutine.yield() end
  end
end

-- Index lag (messages archived but not indexed yet), engine-wide or for one
-- source: the lag alone (the partial index on indexed = 0), not the index's
-- other counts, which read every page of it and would hold the loop at
-- each status change of every source.
function A.lag(source)
  local store = require "vault.store"
  if source then
    return store.query("SELECT count(*) AS n FROM messages m WHERE m.indexed = 0 AND " ..
      "EXISTS (SELECT 1 FROM locations l WHERE l.hash = m.hash AND l.source = ?)", source)[1].n
  end
  return store.query("SELECT count(*) AS n FROM messages WHERE indexed = 0")[1].n
end

function A.index_stats()
  local ix = archive.index()
  return { indexed = ix.indexed, lag = ix.lag, unreadable = ix.unreadable, bytes = ix.bytes,
    thread = ix.thread }
end

-- ---- output for people ---------------------------------------------------

local function date_text(t)
  if not t then return "          " end
  return os.date("!%Y-%m-%d", t)
end

local function cut(s, n)
  s = (s or ""):gsub("[%c]", " ")
  if utf8.len(s) and utf8.len(s) > n then
    return s:sub(1, utf8.offset(s, n) - 1) .. "…"
  end
  return s
end

-- `emailvault search`: the text to print and the exit status.
function A.cli_search(query, limit, offset, as_json)
  local hits, err, col = archive.search(query, { limit = limit, offset = offset })
  if not hits then
    if col then
      return string.format("emailvault search: %s\n  %s\n  %s^", err, query, string.rep(" ", col - 1)), 2
    end
    return "emailvault search: " .. err, 1
  end
  if as_json then
    local lines = {}
    for i, h in ipairs(hits) do lines[i] = json.output(h) end
    return #lines > 0 and table.concat(lines, "\n") .. "\n" or "", 0
  end
  if #hits == 0 then return "no message matches\n", 0 end
  local out = {}
  for _, h in ipairs(hits) do
    out[#out + 1] = string.format("%s  %-28s  %s  %s", date_text(h.date), cut(h.from, 28),
      cut(h.subject ~= "" and h.subject or "(no subject)", 60), h.id:sub(1, 12))
    if h.snippet and h.snippet ~= "" then out[#out + 1] = "    " .. cut(h.snippet, 110) end
  end
  return table.concat(out, "\n") .. "\n", 0
end

-- `emailvault show`: the bytes to write and the exit status. MODE is
-- "raw", "headers", "text" or nil (a readable summary).
function A.cli_show(id, mode)
  if mode == "raw" or mode == "headers" then
    -- straight to stdout: a message of any size in the same memory
    local n, err = archive.write(id, io.stdout, mode)
    if not n then return "emailvault show: " .. err .. "\n", 1 end
    return "", 0
  end
  local m, err = archive.message(id, { text = true })
  if not m then return "emailvault show: " .. err .. "\n", 1 end
  local t = m.text
  if mode == "text" then
    return t.body .. (t.attachments ~= "" and ("\n" .. t.attachments) or "") .. "\n", 0
  end
  local out = {
    "Id:      " .. m.id,
    "Date:    " .. (m.date_text or (m.date and os.date("!%Y-%m-%d %H:%M:%SZ", m.date)) or ""),
    "From:    " .. (t.from or ""),
    "To:      " .. (t.to or ""),
  }
  if t.cc ~= "" then out[#out + 1] = "Cc:      " .. t.cc end
  out[#out + 1] = "Subject: " .. (t.subject or "")
  out[#out + 1] = "Size:    " .. tostring(m.size)
  for _, l in ipairs(m.locations) do
    out[#out + 1] = string.format("In:      %s/%s (UID %d)", l.source, l.folder, l.uid)
  end
  if t.filenames ~= "" then
    out[#out + 1] = "Files:   " .. t.filenames:gsub("\n", ", ")
  end
  out[#out + 1] = ""
  out[#out + 1] = t.body
  return table.concat(out, "\n") .. "\n", 0
end

return A
