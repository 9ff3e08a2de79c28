"""A fault-injecting TCP proxy on 127.0.0.1, between the engine and a server.

Each accepted connection takes the next fault of the script (then plain
forwarding once the script is used up)::

    p = FaultProxy("127.0.0.1", dovecot.plain_port)
    p.script(Fault("close", marker=b"BODY[] {", extra=300), Fault("reset"))
    ... source_file(port=p.port, ...)

Faults (bytes are counted on the server-to-client stream, "down"):
- Fault("close", after=N): forwards N bytes, then closes both sides.
- Fault("close", marker=M, extra=K): closes K bytes after the first M
  (e.g. inside the literal that follows "BODY[] {").
- Fault("close", tls_after=N, tls_offset=K): closes K bytes into the first
  TLS record that starts after N bytes (the cut is inside that record;
  `cuts` says where it fell).
- Fault("stall", ...): the same triggers, but the connection is kept open
  and nothing more is forwarded either way for `seconds` (then closed).
- Fault("trickle", delay=D): forwards everything, one byte per send, D
  seconds apart (never silent for long: not a timeout).
- Fault("reset"): accepts and resets the connection at once (RST).
- Fault("blackhole"): accepts, reads, never answers.
Besides: refuse() stops listening (connects are refused) until listen();
stall_open() freezes every connection open now (a server gone silent).

`log` lists (connection number, fault name, what happened). Only the
standard library; threads; every socket is closed by close().
"""
import select
import socket
import struct
import threading
import time


class Fault:
    def __init__(self, kind, after=None, marker=None, extra=0, tls_after=None, tls_offset=0,
                 seconds=30.0, delay=0.001):
        assert kind in ("close", "stall", "trickle", "reset", "blackhole")
        self.kind, self.after, self.marker, self.extra = kind, after, marker, extra
        self.tls_after, self.tls_offset = tls_after, tls_offset
        self.seconds, self.delay = seconds, delay

    def triggered(self):
        return self.after is not None or self.marker is not None or self.tls_after is not None

    def __repr__(self):
        bits = [self.kind]
        for k in ("after", "marker", "extra", "tls_after", "tls_offset"):
            v = getattr(self, k)
            if v not in (None, 0):
                bits.append("%s=%r" % (k, v))
        return "Fault(%s)" % ", ".join(bits)


class _Cut:
    """Finds the down-stream offset where a triggered fault acts."""

    def __init__(self, fault):
        self.f = fault
        self.total = 0           # bytes seen so far
        self.tail = b""          # for markers split across reads
        self.cut = fault.after
        self.rec_next = 0        # offset of the next TLS record header
        self.rec_hdr = b""
        self.record = None       # (start, length) of the record cut into

    def feed(self, data):
        """How many bytes of DATA to forward before the fault acts (None: all)."""
        start = self.total
        self.total += len(data)
        if self.cut is None and self.f.marker is not None:
            buf = self.tail + data
            i = buf.find(self.f.marker)
            if i >= 0:
                self.cut = start - len(self.tail) + i + len(self.f.marker) + self.f.extra
            self.tail = buf[-(len(self.f.marker) - 1):] if len(self.f.marker) > 1 else b""
        if self.cut is None and self.f.tls_after is not None:
            self._tls(data, start)
        if self.cut is not None and self.cut < self.total:
            return max(0, self.cut - start)
        return None

    def _tls(self, data, start):
        pos = start
        end = start + len(data)
        while self.cut is None and pos < end:
            if pos < self.rec_next:
                pos = self.rec_next
                continue
            need = 5 - len(self.rec_hdr)
            chunk = data[pos - start:pos - start + need]
            self.rec_hdr += chunk
            pos += len(chunk)
            if len(self.rec_hdr) < 5:
                return
            rec_start = pos - 5
            length = struct.unpack(">H", self.rec_hdr[3:5])[0]
            self.rec_hdr = b""
            self.rec_next = pos + length
            if rec_start >= self.f.tls_after and 0 < self.f.tls_offset < length:
                self.cut = pos + self.f.tls_offset
                self.record = (rec_start, length)


class FaultProxy:
    def __init__(self, host, port):
        self.target = (host, port)
        self.faults = []
        self.lock = threading.Lock()
        self.log = []
        self.cuts = []            # (connection, fault, cut offset, TLS record or None)
        self.accepted = 0
        self.stopped = False
        self.socks = []
        self.frozen = threading.Event()
        self.port = 0
        self.listener = None
        self.listen()

    # -- for tests ------------------------------------------------------
    def script(self, *faults):
        with self.lock:
            self.faults.extend(faults)

    def pending(self):
        with self.lock:
            return len(self.faults)

    def refuse(self):
        """Stops listening: connections are refused until listen()."""
        if self.listener:
            try:    # wakes the accept() of the serving thread; close alone would not
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None

    def listen(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self.port = s.getsockname()[1]
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def stall_open(self):
        """Every connection open now stops forwarding (until close())."""
        self.frozen.set()

    def events(self, name=None):
        with self.lock:
            return [e for e in self.log if name is None or e[1] == name]

    def wait_for(self, name, count=1, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.events(name)) >= count:
                return self.events(name)
            time.sleep(0.02)
        raise AssertionError("proxy: no %d %r events within %ss: %r" % (count, name, timeout, self.log))

    def close(self):
        self.stopped = True
        self.refuse()
        self.frozen.clear()
        for s in list(self.socks):
            _close(s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- serving --------------------------------------------------------
    def _note(self, n, what, detail=""):
        with self.lock:
            self.log.append((n, what, detail))

    def _accept(self, listener):
        while not self.stopped:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                n = self.accepted
                fault = self.faults.pop(0) if self.faults else None
            self.socks.append(client)
            threading.Thread(target=self._serve, args=(n, client, fault), daemon=True).start()

    def _serve(self, n, client, fault):
        if fault and fault.kind == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            self._note(n, "reset")
            return
        if fault and fault.kind == "blackhole":
            self._note(n, "blackhole")
            try:
                while not self.stopped and client.recv(65536):
                    pass
            except OSError:
                pass
            _close(client)
            return
        try:
            server = socket.create_connection(self.target, timeout=10)
        except OSError as e:
            self._note(n, "upstream-failed", str(e))
            _close(client)
            return
        server.settimeout(None)
        self.socks.append(server)
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._note(n, "open", repr(fault) if fault else "forward")
        self._pump(n, client, server, fault)

    def _pump(self, n, client, server, fault):
        cut = _Cut(fault) if fault and fault.triggered() else None
        trickle = fault.delay if fault and fault.kind == "trickle" else None
        try:
            while not self.stopped:
                if self.frozen.is_set():
                    self._note(n, "frozen")
                    while self.frozen.is_set() and not self.stopped:
                        time.sleep(0.05)
                    break
                r, _, _ = select.select([client, server], [], [], 0.1)
                if client in r:
                    data = client.recv(65536)
                    if not data:
                        break
                    server.sendall(data)
                if server in r:
                    data = server.recv(65536)
                    if not data:
                        break
                    keep = cut.feed(data) if cut else None
                    if keep is not None:
                        client.sendall(data[:keep])
                        self._act(n, fault, cut)
                        break
                    if trickle is not None:
                        for i in range(len(data)):
                            client.sendall(data[i:i + 1])
                            time.sleep(trickle)
                    else:
                        client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(server)
            self._note(n, "closed")

    def _act(self, n, fault, cut):
        with self.lock:
            self.cuts.append((n, repr(fault), cut.cut, cut.record))
        if fault.kind == "close":
            self._note(n, "cut", "at byte %d%s" % (cut.cut, " in TLS record %r" % (cut.record,)
                                                   if cut.record else ""))
            return
        self._note(n, "stall", "at byte %d for %ss" % (cut.cut, fault.seconds))
        deadline = time.time() + fault.seconds
        while time.time() < deadline and not self.stopped:
            time.sleep(0.05)


def _close(s):
    try:
        s.close()
    except OSError:
        pass
