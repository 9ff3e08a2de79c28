-- The engine side of `emailvault eval` and the REPL: each chunk runs in its
-- own task (so async calls work), prints go back to its client, and results
-- are formatted for a person or as JSON.

local task = require "vault.task"
local control = require "vault.control"
local pretty = require "pretty"
local json = require "json"

local R = {}

local task_client = {}   -- task id -> client id, for print

-- Globals of chunks typed at the prompt; shared by every client.
R.env = setmetatable({}, { __index = _G })

local function tostr_all(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  return table.concat(parts, "\t")
end

R.env.print = function(...)
  local t = task.current()
  local client = t and task_client[task.id(t)]
  if client then control.send(client, "O", tostr_all(...) .. "\n")
  else print(...) end
end

-- Compiles CHUNK as "return CHUNK" first, so an expression shows its value.
function R.compile(chunk)
  local fn = load("return " .. chunk, "=eval", "t", R.env)
  if fn then return fn end
  return load(chunk, "=eval", "t", R.env)
end

-- Strips the frames of the engine's own plumbing from a traceback.
local function clean_traceback(msg)
  msg = tostring(msg)
  local head, tb = msg:match("^(.-)\nstack traceback:\n(.*)$")
  if not head then return msg end
  local keep = {}
  for line in tb:gmatch("[^\n]+") do
    if line:find("eval", 1, true) or (not line:find("[C]", 1, true) and not line:find("lua/repl.lua", 1, true)) then
      keep[#keep + 1] = line
    end
  end
  if #keep == 0 then return head end
  return head .. "\nstack traceback:\n" .. table.concat(keep, "\n")
end

-- Runs CHUNK for CLIENT. Returns the task id, or nil if it did not compile
-- (the error is already sent).
function R.eval(client, chunk, as_json)
  local fn, err = R.compile(chunk)
  if not fn then
    control.send(client, "X", err)
    return nil
  end
  local id
  local h = task.spawn("eval", fn, function(ok, ...)
    if id then task_client[id] = nil end
    if not ok then
      control.send(client, "X", clean_traceback((...)))
      return
    end
    local n = select("#", ...)
    local fmt_ok, text = pcall(as_json and json.results or pretty.results, n, ...)
    if fmt_ok then control.send(client, "R", text)
    else control.send(client, "X", "cannot format the result: " .. tostring(text)) end
  end)
  id = task.id(h)
  task_client[id] = client
  return id
end

-- Names that complete WORD at the prompt, one per line.
function R.complete(word)
  return require("repl_complete").complete(word, R.env)
end

return R
