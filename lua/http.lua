-- vault.http: request{} from C (src/lua/http.c), and the encoding helpers
-- that token endpoints and webhooks need.

local H = {}

local ok, C = pcall(require, "vault.http")
H.request = ok and C.request or nil

-- Percent-encodes everything but RFC 3986's unreserved characters, so the
-- result is safe in a query, a path segment or a form body.
function H.urlencode(s)
  if type(s) == "number" then s = tostring(s) end
  if type(s) ~= "string" then error("vault.http.urlencode expects a string", 2) end
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- application/x-www-form-urlencoded from { name = value, ... } (sorted by
-- name, so the same table gives the same text) or a list of { name, value }
-- pairs (kept in order).
function H.form(t)
  if type(t) ~= "table" then error("vault.http.form expects a table", 2) end
  local parts = {}
  if #t > 0 then
    for i, pair in ipairs(t) do
      if type(pair) ~= "table" or pair[1] == nil or pair[2] == nil then
        error("vault.http.form: entry " .. i .. " must be { name, value }", 2)
      end
      parts[#parts + 1] = H.urlencode(pair[1]) .. "=" .. H.urlencode(pair[2])
    end
    return table.concat(parts, "&")
  end
  local names = {}
  for k in pairs(t) do
    if type(k) ~= "string" then error("vault.http.form: names must be strings", 2) end
    names[#names + 1] = k
  end
  table.sort(names)
  for _, k in ipairs(names) do parts[#parts + 1] = H.urlencode(k) .. "=" .. H.urlencode(t[k]) end
  return table.concat(parts, "&")
end

return H
