-- Keeping a source file's secrets out of its error messages. Lua's own
-- messages quote source text: `unfinished string near '"Hunter2...'`, or
-- `attempt to perform arithmetic on a string value (constant 'Hunter2')`.
-- So before a message about a file goes anywhere (check's output, the log,
-- archive.db, status, eval), three things are hidden:
--
--   * a string literal quoted as the token near a syntax error;
--   * every string the text gives to `password =` (`client_secret =` and
--     `refresh_token =` of oauth2{...} too) or to secret.*, and for a
--     bare `password = Hunter2-Very-Secret` its words (found by a lexer of
--     its own, which also works on text that does not compile);
--   * on the lines of those values, every quoted name or token.
--
-- The lexer does not need to be right about valid Lua only: it has to find
-- the values around the very typos that break the file.

local M = {}

M.MIN = 3   -- shorter strings would blank out ordinary words (as the log's scrubber)

local KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or repeat " ..
  "return then true until while"):gmatch("%a+") do KEYWORDS[w] = true end

-- Quoted words of Lua's messages that are never the file's text.
local SAFE = { ["<eof>"] = true }
for w in ("nil boolean number string table function thread userdata"):gmatch("%a+") do SAFE[w] = true end

-- The value of a short string's body, as far as its escapes are valid.
local function unescape(body)
  local out, i, n = {}, 1, #body
  local simple = { a = "\a", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", v = "\v",
    ["\\"] = "\\", ['"'] = '"', ["'"] = "'", ["\n"] = "\n" }
  while i <= n do
    local c = body:sub(i, i)
    if c ~= "\\" then
      out[#out + 1] = c
      i = i + 1
    else
      local e = body:sub(i + 1, i + 1)
      if simple[e] then
        out[#out + 1] = simple[e]
        i = i + 2
      elseif e == "x" and body:find("^%x%x", i + 2) then
        out[#out + 1] = string.char(tonumber(body:sub(i + 2, i + 3), 16))
        i = i + 4
      elseif e:find("%d") then
        local digits = body:match("^%d%d?%d?", i + 1)
        local v = tonumber(digits)
        if v > 255 then break end
        out[#out + 1] = string.char(v)
        i = i + 1 + #digits
      elseif e == "z" then
        i = (body:find("[^%s]", i + 2) or n + 1)
      elseif e == "u" and body:find("^{%x+}", i + 2) then
        local hex = body:match("^{(%x+)}", i + 2)
        local v = tonumber(hex, 16)
        if not v or v > 0x7FFFFFFF then break end
        out[#out + 1] = utf8.char(v)
        i = i + 4 + #hex
      else
        break   -- an invalid escape: the rest is not a value
      end
    end
  end
  return table.concat(out)
end

-- The tokens of TEXT: { kind = "name"|"string"|"other", text, raw, line, last }
-- where raw is a string's body as written (to the end of the line if it is
-- not closed) and last the line it ends on.
local function tokens(text)
  local list, i, n, line = {}, 1, #text, 1
  local function add(kind, value, raw, first)
    list[#list + 1] = { kind = kind, text = value, raw = raw, line = first, last = line }
  end
  while i <= n do
    local c = text:sub(i, i)
    if c == "\n" then
      line = line + 1
      i = i + 1
    elseif c:find("%s") then
      i = i + 1
    elseif text:find("^%-%-", i) then
      local level = text:match("^%-%-%[(=*)%[", i)
      if level then
        local close = text:find("]" .. level .. "]", i, true)
        local stop = close and close + #level + 1 or n
        local _, nl = text:sub(i, stop):gsub("\n", "")
        line = line + nl
        i = stop + 1
      else
        i = (text:find("\n", i, true) or n + 1)
      end
    elseif text:find("^%[=*%[", i) then
      local level = text:match("^%[(=*)%[", i)
      local open_end = i + #level + 2
      local close = text:find("]" .. level .. "]", open_end, true)
      local body = text:sub(open_end, (close or n + 1) - 1)
      local first = line
      local _, nl = text:sub(i, close and close + #level + 1 or n):gsub("\n", "")
      line = line + nl
      add("string", (body:gsub("^\r?\n", "")), body, first)
      i = close and close + #level + 2 or n + 1
    elseif c == '"' or c == "'" then
      local j, first = i + 1, line
      while j <= n do
        local d = text:sub(j, j)
        if d == "\\" then
          if text:sub(j + 1, j + 1) == "\n" then line = line + 1 end
          j = j + 2
        elseif d == c or d == "\n" then
          break
        else
          j = j + 1
        end
      end
      local body = text:sub(i + 1, math.min(j, n + 1) - 1)
      add("string", unescape(body), body, first)
      i = (text:sub(j, j) == c) and j + 1 or j
    elseif c:find("[%a_]") then
      local w = text:match("^[%w_]+", i)
      add("name", w, w, line)
      i = i + #w
    else   -- a number, or a symbol ("==" apart from "=")
      local w = (c:find("%d") and text:match("^[%w_.]+", i)) or text:match("^[=~<>]=", i)
        or text:match("^%.%.%.?", i) or c
      add("other", w, w, line)
      i = i + #w
    end
  end
  return list
end

local function is(t, kind, text) return t and t.kind == kind and (text == nil or t.text == text) end

-- The fields whose values are secrets: the password, and oauth2{...}'s.
local SECRET_NAMES = { password = true, client_secret = true, refresh_token = true }
local function secret_name(t, kind) return t and t.kind == kind and SECRET_NAMES[t.text] end

-- The strings (and lines) of the value that starts at token I: up to a ',',
-- ';' or '}' outside brackets, or the end of a secret.*'s argument.
local function value_at(toks, i, found, lines, is_call, literals)
  local depth, words, strings, calls = 0, {}, 0, false
  local first = toks[i]
  if is_call and first and first.kind == "string" then
    lines[first.line], lines[first.last] = true, true
    found[#found + 1] = first.text
    found[#found + 1] = first.raw
    return
  end
  for k = i, math.min(#toks, i + 200) do
    local t = toks[k]
    if t.kind == "other" then
      if t.text == "." or t.text == ":" then calls = true end
      if t.text == "(" or t.text == "{" or t.text == "[" then depth = depth + 1; calls = true
      elseif t.text == ")" or t.text == "}" or t.text == "]" then
        depth = depth - 1
        if depth < 0 or (is_call and depth == 0) then break end
      elseif (t.text == "," or t.text == ";") and depth == 0 then break end
    end
    for l = t.line, t.last do lines[l] = true end
    if t.kind == "string" then
      strings = strings + 1
      found[#found + 1] = t.text
      found[#found + 1] = t.raw
      if literals then literals[#literals + 1] = t.text end
    elseif t.kind == "name" and not KEYWORDS[t.text] then
      words[#words + 1] = t.text
    end
  end
  if strings == 0 and not calls then   -- a bare value: its words may be the password
    for _, w in ipairs(words) do found[#found + 1] = w end
  end
end

-- The strings of TEXT that may be secrets, the lines they are on, and the
-- string literals of password values (the likely passwords themselves).
function M.find(text)
  local toks = tokens(text)
  local found, lines, literals = {}, {}, {}
  for i, t in ipairs(toks) do
    local nxt = toks[i + 1]
    if secret_name(t, "name") and is(nxt, "other", "=") then
      value_at(toks, i + 2, found, lines, false, literals)
    elseif secret_name(t, "string") and is(toks[i - 1], "other", "[") and is(nxt, "other", "]")
        and is(toks[i + 2], "other", "=") then
      value_at(toks, i + 3, found, lines, false, literals)
    elseif is(t, "name", "secret") and is(nxt, "other", ".") and is(toks[i + 2], "name") then
      value_at(toks, i + 3, found, lines, true)
    end
  end
  local function long_ones(list)
    local seen, out = {}, {}
    for _, s in ipairs(list) do
      if #s >= M.MIN and not seen[s] then
        seen[s] = true
        out[#out + 1] = s
      end
    end
    table.sort(out, function(a, b) return #a > #b end)   -- longest first
    return out
  end
  return long_ones(found), lines, long_ones(literals)
end

-- A string literal quoted as the token near a syntax error, without its text.
local function hide_near_string(msg)
  local head, tok = msg:match("^(.- near )'(.*)'$")
  if head and (tok:find("^[\"']") or tok:find("^%[=*%[")) then
    return head .. "'" .. (tok:match("^[\"']") or tok:match("^%[=*%[")) .. "***'"
  end
  return msg
end

local function replace_plain(msg, word)
  local out, from = {}, 1
  while true do
    local i, j = msg:find(word, from, true)
    if not i then break end
    out[#out + 1] = msg:sub(from, i - 1) .. "***"
    from = j + 1
  end
  out[#out + 1] = msg:sub(from)
  return table.concat(out)
end

-- A function that hides the secrets of the file at PATH, whose text is
-- TEXT, in a message "PATH:LINE: ..."; and the likely passwords, for the
-- log's scrubber.
function M.hider(path, text)
  local secrets, lines, literals = M.find(text)
  return function(msg)
    msg = hide_near_string(tostring(msg))
    for _, s in ipairs(secrets) do msg = replace_plain(msg, s) end
    local line = msg:sub(1, #path + 1) == path .. ":" and tonumber(msg:match("^(%d+):", #path + 2))
    if line and lines[line] then
      local head = msg:sub(1, #path + #tostring(line) + 2)
      msg = head .. msg:sub(#head + 1):gsub("'([^'\n]*)'", function(q)
        if q:find("%w") and not SAFE[q] then return "'***'" end
      end)
    end
    return msg
  end, literals
end

return M
