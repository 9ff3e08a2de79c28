-- Secrets: passwords given as a string, an environment variable, a file or
-- the output of a command. A secret prints as *** everywhere; its value is
-- kept in a private table and only handed to the connection code.

local core = require "vault.core"

local M = {}

local values = setmetatable({}, { __mode = "k" })   -- secret -> resolved value
local Secret = {}
Secret.__index = Secret
Secret.__name = "secret"
Secret.__tostring = function() return "***" end
Secret.__metatable = "secret"   -- getmetatable() does not reveal the table

function M.is(v) return type(v) == "table" and getmetatable(v) == "secret" end

local function new(kind, arg, base)
  return setmetatable({ kind = kind, arg = arg, base = base }, Secret)
end

function M.literal(value)
  local s = new("string")
  values[s] = value
  core.add_secret(value)
  return s
end

-- The constructors a source file sees as `secret`. BASE is the file, so a
-- relative secret.file path is read from the file's own folder.
function M.constructors(file)
  local base = file:match("^(.*)/[^/]*$") or "."
  local c = {}
  function c.env(name)
    if type(name) ~= "string" or name == "" then
      error('secret.env expects the name of an environment variable: secret.env "IMAP_PASSWORD"', 2)
    end
    return new("env", name)
  end
  function c.file(path)
    if type(path) ~= "string" or path == "" then
      error('secret.file expects a path: secret.file "/etc/emailvault/work.pass"', 2)
    end
    return new("file", path, base)
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
    return new("command", copy)
  end
  return c
end

local function strip_newline(s) return (s:gsub("\r?\n$", "")) end

-- Reads the secret's value now. Returns true or nil, message.
function M.resolve(s)
  if values[s] then return true end
  local v, err
  if s.kind == "env" then
    v = core.getenv(s.arg)
    if v == nil then return nil, "environment variable " .. s.arg .. " is not set" end
    if v == "" then return nil, "environment variable " .. s.arg .. " is empty" end
  elseif s.kind == "file" then
    local path = s.arg
    if path:sub(1, 1) ~= "/" then path = s.base .. "/" .. path end
    v, err = core.readfile(path, 64 * 1024)
    if not v then return nil, "cannot read secret file: " .. err end
    v = strip_newline(v)
    if v == "" then return nil, "secret file " .. path .. " is empty" end
    local st = core.stat(path)
    if st and st.mode & 0x3f ~= 0 then   -- 077: group or others may read it
      core.log("warn", nil, string.format("secret file %s is readable by other users (mode %o); chmod 600 it", path, st.mode))
    end
  elseif s.kind == "command" then
    local out, status, stderr = core.run(s.arg, 10)
    if not out then return nil, "password command failed: " .. status end
    if status ~= 0 then
      local first = (stderr or ""):match("^[^\n]*") or ""
      return nil, string.format("password command %s exited with status %d%s", s.arg[1], status,
        first ~= "" and (": " .. first) or "")
    end
    v = strip_newline(out)
    if v == "" then return nil, "password command " .. s.arg[1] .. " printed nothing" end
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

function M.describe(s)
  if s.kind == "env" then return "secret.env " .. s.arg end
  if s.kind == "file" then return "secret.file " .. s.arg end
  if s.kind == "command" then return "secret.command " .. s.arg[1] end
  return "***"
end

return M
