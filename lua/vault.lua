-- The public `vault` table: the API of DESIGN.md as hooks, the REPL and
-- `emailvault eval` see it. Each function documents itself in docs/lua-api.md.

local core = require "vault.core"
local task = require "vault.task"
local E = require "engine"
local log = require "log"

local vault = {}

vault.version = core.version and core.version() or nil

function vault.sources() return E.list() end

function vault.status(id)
  if type(id) ~= "string" then error("vault.status expects a source id (string)", 2) end
  local rec = E.get(id)
  if not rec then return nil, "no source with id '" .. id .. "'" end
  return E.view(rec)
end

function vault.reload() return E.reload("vault.reload") end

function vault.pause(id) return E.pause(id) end
function vault.resume(id) return E.resume(id) end
function vault.sync(id) return E.sync_now(id) end
function vault.on(event, fn) return E.on(event, fn) end

-- The engine configuration file (emailvault.lua): its path, whether it is
-- loaded, its handlers, its problems, and the handlers' runs.
function vault.config()
  local v = require("config").view(E.opts.config_file)
  v.events = require("events").view()
  return v
end

-- Removes orphan blobs (stored, never recorded); waits for the sweep.
function vault.reclaim() return require("reclaim").run("vault.reclaim") end

-- Messages, bytes, unique blobs and what deduplication saved.
vault.stats = require("stats").stats

-- Where the archive's segments are: { kind = "local" } or { kind = "s3",
-- engine_id, endpoint (host:port), bucket, prefix, uploading }.
function vault.storage() return require("storage").view() end

-- Finding and taking out (docs/search.md).
local A = require "archive"
vault.search = A.search
vault.message = A.message
vault.write_message = A.write_message
vault.export = A.export
-- Empties the index; the indexer fills it again from the blobs.
function vault.reindex() return require("vault.archive").reindex() end

-- The source a log line belongs to: the task's source, if any.
local function current_source()
  local t = task.current()
  local name = t and task.name(t)
  return name and name:match("^source:(.*)$") or nil
end

vault.log = {}
for _, level in ipairs { "debug", "info", "warn", "error" } do
  vault.log[level] = function(msg, ...)
    local fields = ...
    if type(fields) == "table" and select("#", ...) == 1 then
      log[level](current_source(), msg, fields)
    else
      local parts = { tostring(msg) }
      for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
      log[level](current_source(), table.concat(parts, " "))
    end
  end
end

vault.imap = require "vault.imap"
vault.http = require "http"
-- JSON bodies through lua-cjson (docs/lua-api.md); decode returns nil, message.
do
  local json = require "json"
  vault.json = { encode = json.encode, decode = json.decode, null = json.null }
end
vault.task = task

function vault.sleep(seconds) return task.sleep(seconds) end
function vault.now() return core.now() end

return vault
