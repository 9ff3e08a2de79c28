-- Values as a person reads them: tables with sorted keys and nesting,
-- cycles marked, secrets as ***, long output cut with a note.

local secret = require "secret"

local M = {}

M.MAX_BYTES = 64 * 1024
M.MAX_DEPTH = 12

local function is_identifier(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

local type_order = { number = 1, string = 2, boolean = 3 }
local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return (type_order[ta] or 9) < (type_order[tb] or 9) end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function scalar(v)
  local t = type(v)
  if t == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
  if t == "number" then
    if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 1e15 then
      return string.format("%.1f", v)
    end
    return tostring(v)
  end
  return tostring(v)
end

function M.format(value, opts)
  opts = opts or {}
  local max = opts.max_bytes or M.MAX_BYTES
  local out, size, truncated = {}, 0, false
  local function emit(s)
    if truncated then return end
    if size + #s > max then
      out[#out + 1] = s:sub(1, max - size)
      truncated = true
      return
    end
    out[#out + 1] = s
    size = size + #s
  end
  local seen = {}
  local function walk(v, indent, depth)
    if secret.is(v) then return emit('"***"') end
    if type(v) ~= "table" then return emit(scalar(v)) end
    if seen[v] then return emit("<cycle: " .. tostring(v) .. ">") end
    if depth >= M.MAX_DEPTH then return emit("{ ... }") end
    local mt = getmetatable(v)
    if type(mt) == "table" and mt.__tostring and not mt.__pairs then return emit(tostring(v)) end
    seen[v] = true
    local keys, n = {}, #v
    for k in pairs(v) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
    table.sort(keys, key_less)
    if n == 0 and #keys == 0 then
      emit("{}")
    else
      emit("{\n")
      local pad = indent .. "  "
      for i = 1, n do
        emit(pad)
        walk(v[i], pad, depth + 1)
        emit(",\n")
      end
      for _, k in ipairs(keys) do
        emit(pad)
        if is_identifier(k) then emit(k) else emit("["); emit(scalar(k)); emit("]") end
        emit(" = ")
        walk(v[k], pad, depth + 1)
        emit(",\n")
      end
      emit(indent .. "}")
    end
    seen[v] = nil
  end
  walk(value, "", 0)
  local s = table.concat(out)
  if truncated then
    s = s .. string.format("\n... (output cut at %d bytes)", max)
  end
  return s
end

-- Several results, as the REPL shows them: one per line.
function M.results(n, ...)
  local parts = {}
  for i = 1, n do parts[i] = M.format((select(i, ...))) end
  return table.concat(parts, "\n")
end

return M
