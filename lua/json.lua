-- JSON. Protocol bodies (OAuth2 token and device-flow answers, webhook
-- posts, archive.db's progress column) are read and written by lua-cjson:
-- json.decode and json.encode. What people and scripts read (--json of
-- eval, status and search) is written by json.output below: cjson cannot
-- sort keys, and that output must not change from run to run.
--
-- json.output: tables with only keys 1..n are arrays, other keys are
-- sorted; secrets print as "***"; NaN and infinities are null; bytes that
-- are not UTF-8 become U+FFFD; "/" is not escaped.

local secret = require "secret"
local cjson = require("cjson").new()   -- our own settings, shared with no one

local M = {}

-- Strict and bounded for what servers send: no NaN, Infinity or hex
-- numbers, at most 100 levels (cjson recurses on the C stack).
cjson.decode_invalid_numbers(false)
cjson.encode_invalid_numbers(false)
cjson.decode_max_depth(100)
cjson.encode_max_depth(100)

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  s = s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end)
  -- Bytes that are not valid UTF-8 become U+FFFD so the output stays JSON.
  if not utf8.len(s) then
    local out, i = {}, 1
    while i <= #s do
      local ok, cp = pcall(utf8.codepoint, s, i)
      if ok then
        local ch = utf8.char(cp)
        out[#out + 1] = ch
        i = i + #ch
      else
        out[#out + 1] = "\\ufffd"
        i = i + 1
      end
    end
    s = table.concat(out)
  end
  return '"' .. s .. '"'
end

local function is_array(t)
  local n = #t
  local count = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
    count = count + 1
  end
  return count == n
end

function M.output(v, seen)
  seen = seen or {}
  local t = type(v)
  if v == nil then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    if math.type(v) == "integer" then return tostring(v) end
    if v == math.floor(v) and math.abs(v) < 2^53 then return string.format("%d", v) end
    return string.format("%.17g", v)
  end
  if t == "string" then return encode_string(v) end
  if secret.is(v) then return '"***"' end
  if t == "table" then
    if seen[v] then error("cannot encode a table with a cycle as JSON") end
    seen[v] = true
    local out = {}
    if next(v) == nil then
      seen[v] = nil
      return (getmetatable(v) == M.object_mt) and "{}" or "[]"
    end
    if is_array(v) then
      for i = 1, #v do out[i] = M.output(v[i], seen) end
      seen[v] = nil
      return "[" .. table.concat(out, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local val = v[k]
      if val == nil then val = v[tonumber(k)] end
      if type(val) ~= "function" then
        out[#out + 1] = encode_string(k) .. ":" .. M.output(val, seen)
      end
    end
    seen[v] = nil
    return "{" .. table.concat(out, ",") .. "}"
  end
  return encode_string(tostring(v))
end

-- Marks an empty table as an object ({}), not an array ([]).
M.object_mt = {}
function M.object(t) return setmetatable(t or {}, M.object_mt) end

-- JSON's null inside an array (an object's null member is left out).
M.null = cjson.null

-- lua-cjson 2.1.0 reads every number as a float: whole numbers within
-- 2^53 become integers again (3600, not 3600.0), as Lua code expects;
-- past it a double is not exact, so it stays a float.
local function settle(v)
  if type(v) == "number" then
    if v == math.floor(v) and math.abs(v) < 2^53 then return math.tointeger(v) end
    return v
  end
  if type(v) ~= "table" then return v end
  for k, x in next, v do
    if x == cjson.null then
      if math.type(k) ~= "integer" then v[k] = nil end
    else
      v[k] = settle(x)
    end
  end
  return v
end

-- The value of the JSON TEXT, or nil and a message.
function M.decode(text)
  if type(text) ~= "string" then return nil, "expected JSON text (a string), got " .. type(text) end
  local ok, v = pcall(cjson.decode, text)
  if not ok then return nil, "invalid JSON: " .. tostring(v):gsub("^[^:]*%.lua:%d+: ", "") end
  return settle(v)
end

-- V as compact JSON; an empty table is {}. Numbers keep 14 significant
-- digits (cjson 2.1.0's most), exact for integers up to 10^14. Raises on
-- what JSON cannot hold (functions, NaN, cycles, sparse arrays).
function M.encode(v)
  local ok, s = pcall(cjson.encode, v)
  if not ok then error("cannot encode as JSON: " .. tostring(s), 2) end
  return s
end

-- Several results: none -> null, one -> itself, more -> an array.
function M.results(n, ...)
  if n == 0 then return "null" end
  if n == 1 then return M.output((...)) end
  local parts = {}
  for i = 1, n do parts[i] = M.output((select(i, ...))) end
  return "[" .. table.concat(parts, ",") .. "]"
end

return M
