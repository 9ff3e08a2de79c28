-- Secrets: passwords given as a string, an environment variable, a file or
-- the output of a command. A secret prints as *** everywhere; its value is
-- kept in a private table and only handed to the connection code.

local core = require "vault.core"

local M = {}

-- A secret is an empty table: what it stands for is kept here, out of reach
-- of the file that made it and of every other one.
local made = setmetatable({}, { __mode = "k" })     -- secret -> { kind, arg, base, file }
local values = setmetatable({}, { __mode = "k" })   -- secret -> resolved value
local Secret = {
  __name = "secret",
  __tostring = function() return "***" end,
  __metatable = "secret",   -- getmetatable() does not reveal the table
}

function M.is(v) return made[v] ~= nil end

local function new(kind, arg, file)
  local s = setmetatable({}, Secret)
  made[s] = { kind = kind, arg = arg, file = file, base = file and (file:match("^(.*)/[^/]*$") or ".") }
  return s
end

function M.literal(value)
  local s = new("string")
  values[s] = value
  core.add_secret(value)
  return s
end

-- The constructors a source file sees as `secret`. A relative secret.file
-- path is read from FILE's own folder.
function M.constructors(file)
  local c = {}
  function c.env(name)
    if type(name) ~= "string" or name == "" then
      error('secret.env expects the name of an environment variable: secret.env "IMAP_PASSWORD"', 2)
    end
    return new("env", name, file)
  end
  function c.file(path)
    if type(path) ~= "string" or path == "" then
      error('secret.file expects a path: secret.file "/etc/emailvault/work.pass"', 2)
    end
    return new("file", path, file)
  end
  function c.command(argv)
    if type(argv) == "string" then argv = { argv } end
    if type(argv) ~= "table" or type(argv[1]) ~= "string" then
      error('secret.command expects a program and its arguments: secret.command{"pass", "show", "mail/work"}', 2)
    end
    local copy = {}
    for i, a in ipairs(argv) do
      if type(a) ~= "string" then error("secret.command: argument " .. i .. " must be a string", 2) end
      copy[i] = a
    end
    return new("command", copy, file)
  end
  return c
end

local function strip_newline(s) return (s:gsub("\r?\n$", "")) end

-- MSG without the plain text WORD (what the file gave secret.*: errors
-- never show it, it may be the password typed in the wrong place).
local function without(msg, word, instead)
  msg = tostring(msg)
  if word == nil or word == "" then return msg end
  local out, from = {}, 1
  while true do
    local i, j = msg:find(word, from, true)
    if not i then break end
    out[#out + 1] = msg:sub(from, i - 1) .. instead
    from = j + 1
  end
  out[#out + 1] = msg:sub(from)
  return table.concat(out)
end

-- Reads the secret's value now. Returns true or nil, message; a message
-- never repeats the variable name, path or command the file gave.
function M.resolve(s)
  if values[s] then return true end
  local d = made[s]
  if not d then return nil, "not a secret" end
  local v, err
  if d.kind == "env" then
    v = core.getenv(d.arg)
    if v == nil then return nil, "the environment variable named in secret.env is not set" end
    if v == "" then return nil, "the environment variable named in secret.env is empty" end
  elseif d.kind == "file" then
    local path = d.arg
    if path:sub(1, 1) ~= "/" then path = d.base .. "/" .. path end
    v, err = core.readfile(path, 64 * 1024)
    if not v then
      err = tostring(err)
      if err:sub(1, #path + 2) == path .. ": " then err = err:sub(#path + 3) end
      return nil, "cannot read secret file: " .. without(without(err, path, "the file"), d.arg, "the file")
    end
    v = strip_newline(v)
    if v == "" then return nil, "the secret file is empty" end
    local st = core.stat(path)
    if st and st.mode & 0x3f ~= 0 then   -- 077: group or others may read it
      core.log("warn", nil, string.format("the secret file of %s is readable by other users (mode %o); chmod 600 it",
        d.file or "a source", st.mode))
    end
  elseif d.kind == "command" then
    local out, status, stderr = core.run(d.arg, 10)
    if not out then return nil, "password command failed: " .. without(status, d.arg[1], "the program") end
    if status ~= 0 then
      local first = (stderr or ""):match("^[^\n]*") or ""
      return nil, string.format("password command exited with status %d%s", status,
        first ~= "" and (": " .. first) or "")
    end
    v = strip_newline(out)
    if v == "" then return nil, "password command printed nothing" end
  else
    return nil, "unknown secret kind"
  end
  values[s] = v
  core.add_secret(v)
  return true
end

-- The value, for the code that logs in. Never print it.
function M.reveal(s)
  if type(s) == "string" then return s end
  if not M.is(s) then return nil end
  if not values[s] then
    local ok, err = M.resolve(s)
    if not ok then return nil, err end
  end
  return values[s]
end

return M
