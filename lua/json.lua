-- A JSON encoder for `eval --json` and `status --json`. Tables with only
-- keys 1..n are arrays; other keys are sorted so output is stable.

local secret = require "secret"

local M = {}

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

function M.encode(v, seen)
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
      for i = 1, #v do out[i] = M.encode(v[i], seen) end
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
        out[#out + 1] = encode_string(k) .. ":" .. M.encode(val, seen)
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

-- A small decoder for what this engine writes (archive.db's progress).
function M.decode(text)
  local pos = 1
  local function ws() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end
  local value
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = text:sub(pos, pos)
      if c == "" then error("unterminated string") end
      if c == '"' then pos = pos + 1 break end
      if c == "\\" then
        local e = text:sub(pos + 1, pos + 1)
        local map = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
        if e == "u" then
          out[#out + 1] = utf8.char(tonumber(text:sub(pos + 2, pos + 5), 16))
          pos = pos + 6
        else
          out[#out + 1] = map[e] or e
          pos = pos + 2
        end
      else
        out[#out + 1] = c
        pos = pos + 1
      end
    end
    return table.concat(out)
  end
  function value()
    ws()
    local c = text:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1
      ws()
      if text:sub(pos, pos) == "}" then pos = pos + 1 return t end
      while true do
        ws()
        local k = str()
        ws()
        pos = pos + 1   -- :
        t[k] = value()
        ws()
        local d = text:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return t end
      end
    elseif c == "[" then
      local t = {}
      pos = pos + 1
      ws()
      if text:sub(pos, pos) == "]" then pos = pos + 1 return t end
      while true do
        t[#t + 1] = value()
        ws()
        local d = text:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return t end
      end
    elseif c == '"' then
      return str()
    elseif text:sub(pos, pos + 3) == "true" then pos = pos + 4 return true
    elseif text:sub(pos, pos + 4) == "false" then pos = pos + 5 return false
    elseif text:sub(pos, pos + 3) == "null" then pos = pos + 4 return nil
    end
    local num = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not num or num == "" then error("invalid JSON at " .. pos) end
    pos = pos + #num
    return math.tointeger(tonumber(num)) or tonumber(num)
  end
  local ok, v = pcall(value)
  if not ok then return nil, v end
  return v
end

-- Several results: none -> null, one -> itself, more -> an array.
function M.results(n, ...)
  if n == 0 then return "null" end
  if n == 1 then return M.encode((...)) end
  local parts = {}
  for i = 1, n do parts[i] = M.encode((select(i, ...))) end
  return "[" .. table.concat(parts, ",") .. "]"
end

return M
