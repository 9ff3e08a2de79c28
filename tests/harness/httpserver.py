"""A small HTTP/HTTPS server for tests, on a free 127.0.0.1 port.

Routes are Python callables: `srv.route("GET", "/path", fn)` (a path ending
in "*" matches by prefix; method "*" matches any). `fn(req)` gets a Request
and returns a Response, a (status, headers, body) tuple, a str/bytes body
(status 200), or None when it wrote the answer itself (or wants to answer
nothing: the connection is then closed). Every request is recorded in
`srv.requests`. Handlers run in their own thread, so a slow or silent route
does not hold the others; `srv.stopping` is set at stop so they can end.

    with HttpServer() as srv:
        srv.route("POST", "/token", lambda req: Response(200, {"Content-Type": "application/json"}, b"{}"))
        url = srv.url("/token")

HTTPS: HttpServer(tls=True) makes a self-signed certificate for 127.0.0.1 and
localhost (srv.cert_path, srv.cert_sha256_colons); tls_max_version limits the
protocol (to test that old TLS is refused).
"""
import hashlib
import http.server
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse

OPENSSL_BIN = shutil.which("openssl") or "/usr/bin/openssl"


class Response:
    def __init__(self, status=200, headers=None, body=b"", chunks=None):
        """HEADERS: dict or list of (name, value). CHUNKS: an iterable of
        bytes sent with chunked transfer coding instead of BODY."""
        self.status = status
        if isinstance(headers, dict):
            headers = list(headers.items())
        self.headers = list(headers or [])
        self.body = body.encode() if isinstance(body, str) else body
        self.chunks = chunks


def json_response(obj, status=200, headers=None):
    h = [("Content-Type", "application/json")] + list((headers or {}).items())
    return Response(status, h, json.dumps(obj).encode())


def redirect(location, status=302):
    return Response(status, {"Location": location}, b"moved\n")


class Request:
    def __init__(self, handler, body):
        self.handler = handler
        self.method = handler.command
        parsed = urllib.parse.urlsplit(handler.path)
        self.path = parsed.path
        self.raw_path = handler.path
        self.query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        self.headers = handler.headers      # email.message.Message: case-insensitive get()
        self.body = body
        self.time = time.time()

    def header(self, name):
        return self.headers.get(name)

    def header_list(self):
        return list(self.headers.items())

    def wait_closed(self, timeout):
        """True once the client has closed the connection (within TIMEOUT)."""
        sock = self.handler.connection
        deadline = time.time() + timeout
        while time.time() < deadline:
            r, _, _ = select.select([sock], [], [], 0.05)
            if r:
                try:
                    if isinstance(sock, ssl.SSLSocket):
                        data = sock.recv(1)
                    else:
                        data = sock.recv(1, socket.MSG_PEEK)
                except (ConnectionError, OSError, ssl.SSLError):
                    return True
                if not data:
                    return True
        return False


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive, so connections get reused

    def log_message(self, fmt, *args):
        pass

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _dispatch(self):
        srv = self.server.owner
        req = Request(self, self._read_body())
        with srv.lock:
            srv.requests.append(req)
            srv.active += 1
            srv.max_active = max(srv.max_active, srv.active)
        try:
            fn = srv.find(req.method, req.path)
            out = fn(req) if fn else Response(404, {"Content-Type": "text/plain"}, b"no route\n")
        finally:
            with srv.lock:
                srv.active -= 1
        if out is None:
            self.close_connection = True
            return
        if isinstance(out, (str, bytes)):
            out = Response(200, {"Content-Type": "text/plain"}, out)
        elif isinstance(out, tuple):
            out = Response(*out)
        self.send_response(out.status)
        names = {n.lower() for n, _ in out.headers}
        for n, v in out.headers:
            self.send_header(n, v)
        if out.chunks is not None:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for c in out.chunks:
                if c:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(out.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out.body)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, ssl.SSLError, OSError):
            self.close_connection = True

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128            # many clients connect at once

    def handle_error(self, request, client_address):
        pass                            # refused handshakes, resets: the test looks at the client

    def finish_request(self, request, client_address):
        if isinstance(request, ssl.SSLSocket):
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


def make_certificate(folder, cn="127.0.0.1", san="DNS:localhost,IP:127.0.0.1"):
    """A self-signed certificate and key in FOLDER: (cert_path, key_path)."""
    cert = os.path.join(folder, "http-cert.pem")
    key = os.path.join(folder, "http-key.pem")
    r = subprocess.run([OPENSSL_BIN, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + cn,
                        "-addext", "subjectAltName=" + san],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("openssl failed: " + r.stdout.decode("utf-8", "replace"))
    return cert, key


class HttpServer:
    def __init__(self, tls=False, tls_max_version=None, folder=None):
        self.routes = []
        self.requests = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.stopping = threading.Event()
        self.tls = tls
        self._own_folder = folder is None
        self.folder = folder or tempfile.mkdtemp(prefix="ev-http-")
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.cert_path = None
        if tls:
            self.cert_path, self.key_path = make_certificate(self.folder)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            if tls_max_version is not None:
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
                ctx.minimum_version = ssl.TLSVersion.TLSv1
                ctx.maximum_version = tls_max_version
            ctx.load_cert_chain(self.cert_path, self.key_path)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True,
                                                do_handshake_on_connect=False)
            with open(self.cert_path, encoding="ascii") as f:
                der = ssl.PEM_cert_to_DER_cert(f.read())
            h = hashlib.sha256(der).hexdigest().upper()
            self.cert_sha256_colons = ":".join(h[i:i + 2] for i in range(0, len(h), 2))
        self.thread = None

    def route(self, method, path, fn):
        self.routes.insert(0, (method.upper(), path, fn))    # later routes win
        return self

    def find(self, method, path):
        for m, p, fn in self.routes:
            if m not in ("*", method):
                continue
            if p == path or (p.endswith("*") and path.startswith(p[:-1])):
                return fn
        return None

    def url(self, path="/", host="127.0.0.1"):
        return "%s://%s:%d%s" % ("https" if self.tls else "http", host, self.port, path)

    def requests_to(self, path):
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        if self.thread:
            self.httpd.shutdown()
            self.thread.join(timeout=5)
            self.thread = None
        self.httpd.server_close()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def free_port():
    """A 127.0.0.1 port that nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
