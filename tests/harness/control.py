"""The control socket spoken directly (no `emailvault eval` process to
start), so a test can time the engine's answer alone: the frame format of
src/control/frame.h."""
import os
import socket
import struct
import threading
import time

EVAL_FLAG_JSON = 0x01


def _read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the engine closed the control socket")
        buf += chunk
    return buf


def eval_chunk(data_dir, chunk, timeout=10):
    """Sends CHUNK as an eval; returns (type, payload) of the reply
    ('R' result or 'X' error), output frames skipped."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(os.path.join(data_dir, "control.sock"))
        body = b"E" + bytes([EVAL_FLAG_JSON]) + chunk.encode()
        s.sendall(struct.pack(">I", len(body)) + body)
        while True:
            (n,) = struct.unpack(">I", _read_exact(s, 4))
            frame = _read_exact(s, n)
            if frame[:1] in (b"R", b"X"):
                return frame[:1].decode(), frame[1:].decode("utf-8", "replace")


class LatencyProbe:
    """Asks `return 1` every INTERVAL seconds in a thread until stopped;
    keeps each round trip's seconds (connect, send, answer)."""

    def __init__(self, data_dir, interval=0.05):
        self.data_dir, self.interval = data_dir, interval
        self.samples, self.errors = [], []
        self.at = []            # when each sample started (time.time())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            t0 = time.monotonic()
            wall = time.time()
            try:
                kind, payload = eval_chunk(self.data_dir, "return 1")
                if kind != "R" or payload.strip() != "1":
                    self.errors.append((kind, payload))
                self.samples.append(time.monotonic() - t0)
                self.at.append(wall + (time.monotonic() - t0))
            except OSError as e:
                self.errors.append(("os", str(e)))
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(15)
        return self

    def slowest(self, n=5):
        """[(started at, seconds)] of the N slowest answers."""
        return sorted(zip([a - s for a, s in zip(self.at, self.samples)], self.samples),
                      key=lambda x: -x[1])[:n]

    def worst(self):
        return max(self.samples) if self.samples else None

    def percentile(self, p):
        if not self.samples:
            return None
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(p / 100.0 * len(s)))]
