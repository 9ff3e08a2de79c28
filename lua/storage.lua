-- Where the archive's segments are kept: the data folder (the default), or
-- S3 when emailvault.lua says `storage = s3 { ... }` (docs/storage.md).
-- Attached once, at start, before any source runs: a bucket that refuses
-- the keys, does not exist, or a clock too far off stops the engine with an
-- error of kind "storage" rather than archiving somewhere else.
local vstorage = require "vault.storage"
local secret = require "secret"
local log = require "log"

local M = {}

-- DEF: the engine configuration (config.current), or nil. true, or nil,
-- kind, message.
function M.start(def)
  local s = def and not def.missing and def.storage
  if not s then return true end
  local t = {}
  for k, v in pairs(s) do t[k] = v end
  for _, f in ipairs({ "access_key", "secret_key" }) do
    local v, err = secret.reveal(s[f])
    if not v then return nil, "config", "storage." .. f .. ": " .. tostring(err) end
    t[f] = v
  end
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

-- What vault.storage() shows: { kind = "local" } or { kind = "s3", ... }.
function M.view()
  return vstorage.info() or { kind = "local" }
end

return M
