-- The IMAP view's policy (docs/imap-view.md): emailvault.lua's
-- serve = imap{...} decides whether the engine listens, where, and who may
-- log in to see which sources; src/serve/ is the server. Applied at start
-- and on every reload that changes the file: the listener is restarted
-- only when where or how it listens changed; a change of users keeps it
-- (sessions of a user whose sources changed, or who is gone, are closed).

local serve = require "vault.serve"
local secret = require "secret"
local log = require "log"

local M = { running = nil }   -- the key of what listens now

local function listen_key(def)
  return table.concat({ def.listen, tostring(def.tls or false), def.cert_file or "",
    def.key_file or "", tostring(def.allow_plaintext or false) }, "\0")
end

-- The users with their passwords read now; a user whose secret cannot be
-- read is left out (and logged), not the whole view.
local function users_of(def)
  local names = {}
  for name in pairs(def.users) do names[#names + 1] = name end
  table.sort(names)
  local list = {}
  for _, name in ipairs(names) do
    local u = def.users[name]
    local pw, err = secret.reveal(u.password)
    if pw then
      list[#list + 1] = { name = name, password = pw, sources = u.sources }
    else
      log.error(nil, "imap view: user left out, cannot read their password", { user = name, error = err })
    end
  end
  return list
end

function M.stop()
  if M.running then
    serve.stop()
    M.running = nil
    log.info(nil, "imap view stopped")
  end
end

-- DEF: the checked serve record, or nil (no serving).
function M.apply(def)
  if not def then return M.stop() end
  local key = listen_key(def)
  local users = users_of(def)
  if M.running == key then
    serve.set_users(users)
    log.info(nil, "imap view users updated", { users = #users })
    return true
  end
  M.stop()
  local ok, err = serve.start { listen = def.listen, tls = def.tls or false, cert_file = def.cert_file,
    key_file = def.key_file, allow_plaintext = def.allow_plaintext or false, users = users }
  if not ok then
    log.error(nil, "imap view cannot start", { listen = def.listen, error = err })
    return nil, err
  end
  M.running = key
  return true
end

return M
