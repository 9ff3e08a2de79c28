-- Tab completion at the REPL prompt: "vault.so" -> "vault.sources",
-- "vault.imap.co" -> "vault.imap.connect", "c:exa" -> "c:examine".

local M = {}

local function keys_of(t, out, seen)
  seen = seen or {}
  if seen[t] then return end
  seen[t] = true
  if type(t) == "table" then
    for k in pairs(t) do if type(k) == "string" then out[k] = true end end
  end
  local mt = debug.getmetatable(t)   -- strings: their metatable is hidden
  if type(mt) == "table" and type(mt.__index) == "table" then keys_of(mt.__index, out, seen) end
end

-- Candidates for WORD in ENV, one per line.
function M.complete(word, env)
  env = env or _G
  local prefix, sep, partial = word:match("^(.-)([%.:])([%w_]*)$")
  local t = env
  if prefix then
    for part in prefix:gmatch("[^%.:]+") do
      if type(t) ~= "table" and type(t) ~= "userdata" then return "" end
      local ok, v = pcall(function() return t[part] end)
      if not ok or v == nil then return "" end
      t = v
    end
  else
    partial, prefix, sep = word, "", ""
  end
  local names = {}
  if type(t) == "userdata" then
    local mt = getmetatable(t)
    if type(mt) == "table" and type(mt.__index) == "table" then keys_of(mt.__index, names) end
  else
    keys_of(t, names)
  end
  local out = {}
  for k in pairs(names) do
    if k:sub(1, #partial) == partial and k:match("^[%a_][%w_]*$") then
      out[#out + 1] = prefix .. sep .. k
    end
  end
  table.sort(out)
  return table.concat(out, "\n")
end

return setmetatable(M, { __call = function(_, word) return M.complete(word) end })
