-- Log lines from Lua: "message key=value ..." through the C logger, so
-- they share its format, its file, its level and its secret scrubbing.

local core = require "vault.core"

local M = {}

local function quote(v)
  v = tostring(v)
  if v ~= "" and not v:find('[%s"=]') and not v:find("%c") then return v end
  return '"' .. v:gsub('[\\"]', "\\%0"):gsub("\n", "\\n"):gsub("\r", "\\r"):gsub("%c", "?") .. '"'
end
M.quote = quote

-- fields: a table of key=value pairs, printed in sorted key order.
function M.format(msg, fields)
  local out = { tostring(msg) }
  if type(fields) == "table" then
    local keys = {}
    for k in pairs(fields) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = fields[k]
      if v == nil then v = fields[tonumber(k)] end
      if type(v) == "table" then
        local parts = {}
        for _, x in ipairs(v) do parts[#parts + 1] = tostring(x) end
        v = #parts > 0 and table.concat(parts, ",") or "-"
      end
      out[#out + 1] = k .. "=" .. quote(v)
    end
  end
  return table.concat(out, " ")
end

for _, level in ipairs { "debug", "info", "warn", "error" } do
  M[level] = function(source, msg, fields)
    if core.log_enabled(level) then core.log(level, source, M.format(msg, fields)) end
  end
end

return M
