-- `emailvault oauth2 login ID`: the OAuth 2.0 device authorization grant
-- (RFC 8628) for a source whose file declares oauth2{...}. It prints a URL
-- and a code, which the user opens and types on any device with a browser
-- (so it works over SSH on a headless server), polls the token endpoint
-- until the sign-in is done, and stores the refresh token where the engine
-- reads it (DATA/oauth2/ID.json, 0600). Runs in a task on its own VM and
-- event loop (src/cli/oauth2.c); no engine is needed.

local core = require "vault.core"
local task = require "vault.task"
local oauth2 = require "oauth2"
local sources = require "sources"

local M = {}

M.DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
M.DEFAULT_INTERVAL = 5      -- RFC 8628 3.2: when the endpoint gives none
M.SLOW_DOWN = 5             -- RFC 8628 3.5: added on each slow_down
M.NETWORK_TRIES = 3         -- failed polls in a row before giving up

local function say(...)
  io.stdout:write(table.concat({ ... }), "\n")
  io.stdout:flush()
end

-- Messages for the end of the flow, by the endpoint's error code.
local ENDINGS = {
  expired_token = "the code expired before the sign-in was completed: run emailvault oauth2 login %s again",
  access_denied = "the sign-in was declined (%s): run emailvault oauth2 login %s again to retry",
  authorization_declined = "the sign-in was declined (%s): run emailvault oauth2 login %s again to retry",
  bad_verification_code = "the endpoint did not accept the device code (%s): run emailvault oauth2 login %s again",
  invalid_client = "the endpoint does not accept this client (%s): check client_id and client_secret, and that " ..
    "the app registration allows the device flow (docs/oauth2.md)",
  unauthorized_client = "this client may not use the device flow (%s): check the app registration " ..
    "(Microsoft: \"Allow public client flows\"; Google: a \"TVs and Limited Input devices\" client; docs/oauth2.md)",
  invalid_scope = "the endpoint refused the scope (%s); Google does not allow the device flow for the Gmail " ..
    "scope https://mail.google.com/: see docs/oauth2.md for getting a Gmail refresh token another way",
}

-- Runs the flow for the source ID of SOURCES_DIR. Returns true, or nil and
-- a message.
function M.login(sources_dir, data_dir, id)
  local path = sources_dir:gsub("/+$", "") .. "/" .. id .. ".lua"
  if not core.stat(path) then return nil, "no source file " .. path end
  local def, problems = sources.load_file(path, id)
  if not def then return nil, table.concat(problems, "\n") end
  if not oauth2.is(def.password) then
    return nil, path .. ": this source logs in with a password; give password = oauth2{...}, " ..
      "oauth2.google{...} or oauth2.microsoft{...} to sign in with OAuth2 (docs/oauth2.md)"
  end
  local s, serr = oauth2.settings(def.password)
  if not s then return nil, serr end
  if not s.device_url then
    return nil, path .. ": oauth2{...} has no device_url: give the provider's device authorization " ..
      "endpoint, or set refresh_token instead (docs/oauth2.md)"
  end
  local hidden = { s.client_secret, s.refresh_token }
  local function fail(msg) return nil, oauth2.hide(msg, hidden) end
  local device_where = "the device authorization endpoint at " .. oauth2.hostport(s.device_url)
  local token_where = "the token endpoint at " .. oauth2.hostport(s.token_url)

  local j, status = oauth2.post(s.device_url, { client_id = s.client_id, scope = s.scope }, device_where)
  if not j and type(status) == "table" then return fail(status.message) end
  if status ~= 200 or not j or type(j.device_code) ~= "string" or type(j.user_code) ~= "string" then
    local code, said = oauth2.endpoint_error(j)
    if code and ENDINGS[code] then return fail(device_where .. ": " .. ENDINGS[code]:format(said, id)) end
    return fail(string.format("%s answered HTTP %d%s", device_where, status,
      said and (": " .. said) or " without a device code"))
  end
  core.add_secret(j.device_code)
  hidden[#hidden + 1] = j.device_code
  local url = j.verification_uri or j.verification_url     -- Google names it _url
  if type(url) ~= "string" then return fail(device_where .. " gave no verification URL") end
  local interval = tonumber(j.interval) or M.DEFAULT_INTERVAL
  if interval ~= interval or interval < 1 then interval = 1 end
  local lifetime = tonumber(j.expires_in) or 900
  local deadline = core.monotonic() + lifetime

  say("To sign in ", def.username, " for source ", id, ", open this page in a browser on any device:")
  say("")
  say("    ", (url:gsub("%c", "?")))
  say("")
  say("and enter the code: ", (j.user_code:gsub("%c", "?")))
  if type(j.verification_uri_complete) == "string" then
    say("(or open ", (j.verification_uri_complete:gsub("%c", "?")), ", which holds the code)")
  end
  say(string.format("Waiting for the sign-in (the code expires in %d minutes; Ctrl-C to give up)...",
    math.max(1, math.floor(lifetime / 60 + 0.5))))

  local failures = 0
  while true do
    task.sleep(interval)
    if core.monotonic() > deadline then return fail(ENDINGS.expired_token:format(id)) end
    local t, tstatus = oauth2.post(s.token_url, {
      grant_type = M.DEVICE_GRANT, device_code = j.device_code, client_id = s.client_id,
      client_secret = s.client_secret,
    }, token_where)
    if not t and type(tstatus) == "table" then
      failures = failures + 1
      if failures >= M.NETWORK_TRIES then return fail(tstatus.message) end
    elseif tstatus == 200 and t and type(t.access_token) == "string" then
      if type(t.refresh_token) ~= "string" or t.refresh_token == "" then
        return fail(token_where .. " signed in but gave no refresh token: the scope must allow offline access " ..
          "(Microsoft: add offline_access to scope; docs/oauth2.md)")
      end
      core.add_secret(t.refresh_token)
      core.add_secret(t.access_token)
      local store = oauth2.store_path(data_dir, id)
      local ok, werr = oauth2.write_store(store, t.refresh_token, oauth2.fingerprint(s), nil, id)
      if not ok then
        return fail("signed in, but the refresh token cannot be stored: " ..
          oauth2.hide(werr, { t.refresh_token }))
      end
      say("Signed in. The refresh token is stored in ", store, " (mode 0600).")
      return true
    else
      failures = 0
      local code, said = oauth2.endpoint_error(t)
      if code == "authorization_pending" then
        -- the user has not finished yet
      elseif code == "slow_down" then
        interval = interval + M.SLOW_DOWN
      elseif code and ENDINGS[code] then
        return fail(token_where .. ": " .. ENDINGS[code]:format(said, id))
      elseif code then
        return fail(token_where .. " refused the sign-in (" .. said .. ")")
      elseif tstatus == 429 or (tstatus >= 500 and tstatus < 600) then
        interval = interval + M.SLOW_DOWN   -- overloaded: ask less often
      else
        return fail(string.format("%s answered HTTP %d without a JSON answer", token_where, tstatus))
      end
    end
  end
end

-- Entry point of src/cli/oauth2.c: spawns the flow in a task that leaves
-- the loop with exit status 0 (stored) or 1.
function M.start(opts)
  task.spawn("oauth2-login", function()
    local ok, err = M.login(opts.sources_dir, opts.data_dir, opts.id)
    if not ok then
      io.stderr:write("emailvault: ", tostring(err), "\n")
      return false
    end
    return true
  end, function(ok, result)
    if not ok then io.stderr:write("emailvault: internal error: ", tostring(result), "\n") end
    core.exit(ok and result and 0 or 1)
  end)
  return true
end

return M
