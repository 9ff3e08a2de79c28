-- `emailvault repl --offline`: the archive as last recorded, without an
-- engine. The parts of the vault API that need none are here; the others
-- say that they need the running engine.

local status = require "status"
local pretty = require "pretty"
local stats = require "stats"

local O = {}

local vault = { offline = true }

function vault.sources() return status.records() end

function vault.status(id)
  for _, r in ipairs(status.records()) do if r.id == id then return r end end
  return nil, "no source '" .. tostring(id) .. "' is recorded in this archive"
end

vault.stats = stats.stats
local A = require "archive"
vault.search, vault.message = A.search, A.message
vault.write_message = A.write_message

local function needs_engine(name)
  return function() error("vault." .. name .. " needs the running engine (emailvault run)", 2) end
end
for _, name in ipairs { "pause", "resume", "sync", "reload", "on", "sleep", "reclaim", "export", "reindex" } do
  vault[name] = needs_engine(name)
end
vault.imap = setmetatable({}, { __index = function(_, k) return needs_engine("imap." .. k) end })
do
  local H = require "http"
  vault.http = { request = needs_engine("http.request"), urlencode = H.urlencode, form = H.form }
end
vault.log = {}
for _, level in ipairs { "debug", "info", "warn", "error" } do
  vault.log[level] = function(...) print(level .. ":", ...) end
end

O.env = setmetatable({ vault = vault }, { __index = _G })

local function traceback(msg)
  return debug.traceback(tostring(msg), 2):gsub("\n[^\n]*lua/offline.lua.*", "")
end

-- Runs CHUNK; returns true, text or false, error text.
function O.eval(chunk)
  local fn = load("return " .. chunk, "=stdin", "t", O.env)
  local err
  if not fn then fn, err = load(chunk, "=stdin", "t", O.env) end
  if not fn then return false, err end
  local res = table.pack(xpcall(fn, traceback))
  if not res[1] then return false, res[2] end
  return true, pretty.results(res.n - 1, table.unpack(res, 2, res.n))
end

function O.complete(word) return require("repl_complete").complete(word, O.env) end

return O
