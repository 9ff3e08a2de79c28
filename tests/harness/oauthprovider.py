"""An OAuth2 provider for tests, on tests/harness/httpserver.py: the token
endpoint (RFC 6749 refresh grant, RFC 8628 device grant), the device
authorization endpoint, and the introspection endpoint that Dovecot's oauth2
passdb asks whether an access token is good.

    with HttpServer() as srv:
        p = Provider(srv, user="alice")
        rt = p.issue_refresh()
        with Dovecot(**p.dovecot_kwargs(tmp)) as d: ...

Behaviour is set by attributes: rotate (a new refresh token on each refresh,
the old one dead), expires_in, delay (seconds before answering a token
request), device_approve_after / device_slow_down_at / device_deny (the
device flow's polls), and revoke(rt), reject(access_token).
Everything it issued is in p.issued (to check that none leaks).
"""
import itertools
import os
import threading
import time
import urllib.parse

from httpserver import json_response

_counter = itertools.count(1)


class Provider:
    def __init__(self, srv, user="alice", client_id="client-id-1",
                 client_secret="client-secret-Q7x9Vb"):
        self.srv = srv
        self.user = user
        self.client_id = client_id
        self.client_secret = client_secret
        self.lock = threading.Lock()
        self.refresh_tokens = set()         # valid refresh tokens
        self.access = {}                    # access token -> expiry (time.time())
        self.rejected = set()               # access tokens introspection refuses
        self.issued = []                    # every token and code handed out
        self.token_forms = []               # (time, form) of each token request
        self.introspected = []              # tokens Dovecot asked about
        self.device_forms = []
        self.rotate = False
        self.expires_in = 3600
        self.delay = 0.0
        self.device_approve_after = 2       # polls answered authorization_pending first
        self.device_slow_down_at = None     # the poll (1-based) answered slow_down
        self.device_deny = False
        self.device_interval = 1
        self.devices = {}                   # device_code -> {"polls": n}
        srv.route("POST", "/token", self._token)
        srv.route("POST", "/device", self._device)
        srv.route("POST", "/introspect", self._introspect)

    # -- URLs and Dovecot --------------------------------------------------------

    @property
    def token_url(self):
        return self.srv.url("/token")

    @property
    def device_url(self):
        return self.srv.url("/device")

    def dovecot_kwargs(self, folder, mechanisms="xoauth2 oauthbearer"):
        """Dovecot(**kwargs) with an oauth2 passdb asking this provider."""
        path = os.path.join(folder, "oauth2-passdb.conf")
        with open(path, "w") as f:
            f.write("introspection_mode = post\n"
                    "introspection_url = %s\n"
                    "username_attribute = username\n"
                    "active_attribute = active\n"
                    "active_value = true\n" % self.srv.url("/introspect"))
        os.chmod(path, 0o644)
        os.chmod(folder, 0o755)
        passdb = ("passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                  "  args = %s\n}\n" % path)
        return {"auth_mechanisms": "plain login " + mechanisms, "passdb_first": passdb}

    # -- tokens -----------------------------------------------------------------

    def _new(self, kind):
        tok = "%s-%d-%s" % (kind, next(_counter), os.urandom(6).hex())
        self.issued.append(tok)
        return tok

    def issue_refresh(self):
        with self.lock:
            rt = self._new("rt")
            self.refresh_tokens.add(rt)
            return rt

    def revoke(self, rt):
        with self.lock:
            self.refresh_tokens.discard(rt)

    def reject(self, access_token):
        with self.lock:
            self.rejected.add(access_token)

    def access_tokens(self):
        with self.lock:
            return [t for t in self.issued if t.startswith("at-")]

    def _grant(self, with_refresh):
        at = self._new("at")
        self.access[at] = time.time() + self.expires_in
        out = {"access_token": at, "token_type": "Bearer", "expires_in": self.expires_in,
               "scope": "mail"}
        if with_refresh:
            rt = self._new("rt")
            self.refresh_tokens.add(rt)
            out["refresh_token"] = rt
        return out

    @staticmethod
    def _form(req):
        return dict(urllib.parse.parse_qsl(req.body.decode("utf-8"), keep_blank_values=True))

    def _token(self, req):
        form = self._form(req)
        with self.lock:
            self.token_forms.append((time.time(), form))
        if self.delay:
            time.sleep(self.delay)
        if form.get("client_id") != self.client_id or \
                form.get("client_secret", self.client_secret) != self.client_secret:
            return json_response({"error": "invalid_client",
                                  "error_description": "The OAuth client was not found."}, 401)
        grant = form.get("grant_type")
        with self.lock:
            if grant == "refresh_token":
                rt = form.get("refresh_token")
                if rt not in self.refresh_tokens:
                    return json_response({"error": "invalid_grant",
                                          "error_description": "Token has been expired or revoked."}, 400)
                if self.rotate:
                    self.refresh_tokens.discard(rt)
                return json_response(self._grant(self.rotate))
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                dev = self.devices.get(form.get("device_code"))
                if dev is None:
                    return json_response({"error": "invalid_grant"}, 400)
                dev["polls"] += 1
                dev["times"].append(time.time())
                if self.device_deny:
                    return json_response({"error": "access_denied",
                                          "error_description": "The user said no."}, 400)
                if dev["polls"] == self.device_slow_down_at:
                    return json_response({"error": "slow_down"}, 400)
                if dev["polls"] <= self.device_approve_after:
                    return json_response({"error": "authorization_pending"}, 400)
                del self.devices[form["device_code"]]
                dev["done"] = True
                return json_response(self._grant(True))
        return json_response({"error": "unsupported_grant_type"}, 400)

    def _device(self, req):
        form = self._form(req)
        with self.lock:
            self.device_forms.append(form)
            if form.get("client_id") != self.client_id:
                return json_response({"error": "invalid_client"}, 401)
            code = self._new("dc")
            user_code = "WDJB-MJHT"
            self.last_device = {"polls": 0, "times": [], "done": False}
            self.devices[code] = self.last_device
            return json_response({"device_code": code, "user_code": user_code,
                                  "verification_uri": "https://example.test/device",
                                  "expires_in": 600, "interval": self.device_interval})

    def _introspect(self, req):
        tok = self._form(req).get("token", "")
        with self.lock:
            self.introspected.append(tok)
            good = tok in self.access and self.access[tok] > time.time() and tok not in self.rejected
        if good:
            return json_response({"active": True, "username": self.user})
        return json_response({"active": False})
