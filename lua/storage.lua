-- Where the archive's segments are kept: the data folder (the default), or
-- S3 when emailvault.lua says `storage = s3 { ... }` (docs/storage.md).
-- Attached once, at start, before any source runs: a bucket that refuses
-- the keys, does not exist, or a clock too far off stops the engine with an
-- error of kind "storage" rather than archiving somewhere else.
local vstorage = require "vault.storage"
local secret = require "secret"
local log = require "log"

local M = {}

-- S (a checked s3 { ... }) with its secrets revealed, for C: a table, or
-- nil and why not.
local function revealed(s)
  local t = {}
  for k, v in pairs(s) do t[k] = v end
  for _, f in ipairs({ "access_key", "secret_key" }) do
    local v, err = secret.reveal(s[f])
    if not v then return nil, "storage." .. f .. ": " .. tostring(err) end
    t[f] = v
  end
  return t
end

-- DEF: the engine configuration (config.current), or nil. true, or nil,
-- kind, message.
function M.start(def)
  local s = def and not def.missing and def.storage
  if not s then
    if vstorage.location() == "s3" then
      local msg = "archive.db says the archive's segments are on S3, and emailvault.lua has no " ..
        "storage = s3 { ... }: add it back, or move the archive home first with " ..
        "emailvault storage migrate local"
      log.error(nil, "the archive's storage cannot be used", { kind = "storage", error = msg })
      return nil, "storage", msg
    end
    return true
  end
  local t, rerr = revealed(s)
  if not t then return nil, "config", rerr end
  local ok, info, msg = vstorage.attach(t)
  if not ok then
    log.error(nil, "the archive's storage cannot be used", { kind = info, error = msg })
    return nil, info, msg
  end
  log.info(nil, "archive storage on S3", { endpoint = s.endpoint:match("^https?://([^/]+)"),
    bucket = s.bucket, prefix = s.prefix or "", engine_id = info.engine_id, run = info.run,
    swept = info.swept })
  return true
end

-- For `emailvault storage ...`: the settings of the configuration file
-- PATH, secrets revealed; or nil and a message.
function M.settings(path, required)
  local def, problems = require("config").load(path, required)
  if not def then return nil, problems[1] end
  if def.missing or not def.storage then
    return nil, "no storage = s3 { ... } in " .. path
  end
  return revealed(def.storage)
end

-- What vault.storage() shows: { kind = "local" } or { kind = "s3", ... }.
function M.view()
  return vstorage.info() or { kind = "local" }
end

return M
