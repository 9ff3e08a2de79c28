-- vault.stats(): messages, bytes, unique blobs and the dedup saving.

local store = require "vault.store"

local M = {}

function M.stats()
  local q = store.query
  local m = q("SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM messages")[1]
  local l = q("SELECT count(*) AS n, coalesce(sum(m.size), 0) AS bytes FROM locations l JOIN messages m ON m.hash = l.hash")[1]
  local s = q("SELECT count(*) AS n FROM skipped")[1]
  local ok, ix = pcall(require("archive").index_stats)
  return { messages = l.n, bytes = l.bytes, unique_blobs = m.n, unique_bytes = m.bytes,
    dedup_saving = l.bytes - m.bytes, skipped = s.n, index = ok and ix or nil }
end

return M
