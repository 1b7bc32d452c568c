"""A fault-injecting TCP proxy on 127.0.0.1, to put between boto3 and a local S3 server (moto).

    with s3_server() as target, FaultProxy.to(target) as proxy:
        s3 = client(proxy.endpoint)
        proxy.stall()          # requests now hang (existing connections too) ...
        proxy.pass_through()   # ... until traffic flows again

Modes, switched with set() or the named methods at any time (open connections notice within 50 ms):
- pass: bytes flow both ways.
- refuse: the listening socket is closed (connect() gets ECONNREFUSED) and re-bound to the same port
  when the mode changes; open connections are closed too (FIN), unless drop_existing=False.
- reset: a connection forwards at most `after_bytes` client bytes (counted from when it first sees the
  mode), then its client socket is closed with SO_LINGER 0 (RST: the client gets ECONNRESET); the
  target side is closed normally. With after_bytes=0, open connections are reset at once and new ones
  as soon as the client sends its first bytes.
- stall: client bytes are read and held, nothing is forwarded either way and the target's answers
  stay unread; when the mode changes, held bytes flow on (a network that recovers).
- http_error: from its next request on, each connection reads the request (head, then a Content-Length
  or chunked body with trailers; only the head if it says Expect: 100-continue) and answers it itself:
  the status, an S3 XML <Error>, Connection: close. Nothing reaches the target.
- latency: a connection's first forward waits `delay_s` (the TCP handshake's round trip), and every
  forward that reverses the direction of the last one waits delay_s / 2. So a request/response
  exchange on an open connection costs delay_s, a PUT with Expect: 100-continue costs 2 * delay_s,
  and a new connection adds delay_s once. No bandwidth limit.

One thread accepts; each connection gets one thread that polls both sockets. The client->server
stream is parsed as HTTP/1.1 to find request boundaries (to count requests, and so that http_error
starts cleanly at the next request of a kept-alive connection).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from http import HTTPStatus
from types import TracebackType
from typing import Literal, get_args
from urllib.parse import urlsplit

Mode = Literal["pass", "refuse", "reset", "stall", "http_error", "latency"]
POLL_S = 0.05  # how quickly connections notice a mode change or stop()
CODES = {
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("ServiceUnavailable", "Please reduce your request rate."),
}


@dataclass(frozen=True)
class _Setting:
    mode: Mode = "pass"
    after_bytes: int = 0  # reset: client bytes forwarded before the reset
    status: int = 503  # http_error
    code: str | None = None  # http_error: S3 error code; default from CODES
    delay_s: float = 0.0  # latency: one round trip
    drop_existing: bool = True  # refuse: also close open connections (a kept-alive one would dodge the outage)
    gen: int = 0  # bumped on every set(), so a connection can tell it has not seen this setting yet


class _RequestParser:
    """Finds request boundaries in a client->server byte stream, however it is split."""

    def __init__(self) -> None:
        self.state = "idle"  # idle | head | body | size | data | trailer
        self.buf = bytearray()
        self.left = 0
        self.method = ""
        self.headers: dict[str, str] = {}

    def feed(self, data: bytes) -> tuple[int, bool, bool]:
        """Consumes a prefix of `data`, stopping right after a head or a request's end.
        Returns (bytes consumed, head just completed, request just ended)."""
        i = 0
        while i < len(data):
            if self.state == "idle":  # this byte starts a request
                self.state, self.headers, self.method = "head", {}, ""
            if self.state in ("body", "data"):
                n = min(self.left, len(data) - i)
                i, self.left = i + n, self.left - n
                if self.left == 0 and self.state == "body":
                    self.state = "idle"
                    return i, False, True
                if self.left == 0:
                    self.state = "size"
                continue
            j = data.find(b"\n", i)
            self.buf += data[i : len(data) if j < 0 else j + 1]
            if len(self.buf) > 65536:
                raise ValueError("HTTP line too long")
            i = len(data) if j < 0 else j + 1
            if j < 0:
                continue
            line = bytes(self.buf).strip()
            self.buf.clear()
            if self.state == "head":
                if line and not self.method:  # the request line
                    self.method = line.split(b" ", 1)[0].decode("latin-1")
                elif line:
                    name, _, value = line.decode("latin-1").partition(":")
                    self.headers[name.strip().lower()] = value.strip()
                elif self.method:  # the blank line ending the head (leading blank lines are ignored)
                    self.state, self.left = "body", int(self.headers.get("content-length", "0"))
                    if "chunked" in self.headers.get("transfer-encoding", "").lower():
                        self.state = "size"
                    elif self.left == 0:
                        self.state = "idle"
                    return i, True, self.state == "idle"
            elif self.state == "size":
                size = int(line.split(b";", 1)[0], 16)
                self.state, self.left = ("data", size + 2) if size else ("trailer", 0)  # +2: the chunk's CRLF
            elif not line:  # trailer section ends at a blank line
                self.state = "idle"
                return i, False, True
        return i, False, False


class _Conn:
    def __init__(self, client: socket.socket, setting: _Setting) -> None:
        self.client = client
        self.up: socket.socket | None = None  # connected on the first byte to forward
        self.pending = bytearray()  # client bytes received but not yet forwarded (stall holds them here)
        self.parser = _RequestParser()
        self.gen, self.budget = setting.gen, setting.after_bytes
        self.used = False  # has the client sent anything yet
        self.swallow = False  # the current request is answered by the proxy, not forwarded
        self.last_dir = ""  # "up" or "down": latency charges half a round trip when this flips


class FaultProxy:
    """Forwards 127.0.0.1:<free port> to the target; faults are switched on with set() at any time.
    Counters: connections accepted, requests (heads seen client->server), methods (per HTTP method),
    bytes_up (written to the target), bytes_down (written to clients, synthesized errors included)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._applied = threading.Condition(self._lock)
        self._setting, self._applied_gen = _Setting(), 0
        self._stopping = threading.Event()
        self._socks: set[socket.socket] = set()
        self._conns: set[_Conn] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = self._listen(0)
        self.port: int = self._listener.getsockname()[1]
        self.connections = self.requests = self.bytes_up = self.bytes_down = 0
        self.methods: Counter[str] = Counter()
        self._bind_error: OSError | None = None
        self._acceptor: threading.Thread | None = None

    @classmethod
    def to(cls, endpoint: str) -> FaultProxy:
        parts = urlsplit(endpoint)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> Mode:
        return self._setting.mode

    def start(self) -> FaultProxy:
        if self._acceptor is not None or self._stopping.is_set():
            raise RuntimeError("a FaultProxy starts once")
        self._acceptor = self._spawn(self._accept_loop, "accept")
        return self

    def stop(self) -> None:
        """Closes every socket and joins every thread; safe to call twice."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)  # first, so no connection thread starts after this
        with self._lock:
            for s in self._socks:  # shutdown wakes a thread blocked in sendall; its owner closes it
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        for t in list(self._threads):
            t.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def set(self, mode: Mode, **params: object) -> None:
        """Switches mode. Returns once the listener is closed or re-bound as the mode needs, and every
        open connection has taken the mode on (closed, if refuse or reset says so), or after 2 s."""
        if mode not in get_args(Mode):
            raise ValueError(f"unknown mode {mode!r}")
        with self._lock:
            setting = replace(_Setting(mode=mode, gen=self._setting.gen + 1), **params)  # type: ignore[arg-type]
            HTTPStatus(setting.status)  # ValueError here, not later in a connection thread
            self._setting = setting
            started = self._acceptor is not None and not self._stopping.is_set()
            if started and not self._applied.wait_for(lambda: self._applied_gen >= setting.gen, timeout=5):
                raise RuntimeError(f"proxy listener did not follow mode {mode}: {self._bind_error}")
            # Without this wait, a request sent right after set() could still meet the old mode on a
            # kept-alive connection. A connection blocked in sendall (a client not reading) may lag.
            self._applied.wait_for(lambda: all(c.gen >= setting.gen for c in self._conns), timeout=2)

    def pass_through(self) -> None:
        self.set("pass")

    def refuse(self, drop_existing: bool = True) -> None:
        self.set("refuse", drop_existing=drop_existing)

    def reset(self, after_bytes: int = 0) -> None:
        self.set("reset", after_bytes=after_bytes)

    def stall(self) -> None:
        self.set("stall")

    def http_error(self, status: int = 503, code: str | None = None) -> None:
        self.set("http_error", status=status, code=code)

    def latency(self, delay_s: float) -> None:
        self.set("latency", delay_s=delay_s)

    # -- threads -------------------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> threading.Thread:
        t = threading.Thread(target=target, args=args, name=f"s3proxy-{self.port}-{name}", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()
        return t

    def _listen(self, port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # re-bind over our own TIME_WAIT sockets
        s.bind(("127.0.0.1", port))
        s.listen(64)
        return s

    def _accept_loop(self) -> None:
        # This thread alone opens and closes the listener, so nothing closes a socket under a select().
        while not self._stopping.is_set():
            setting = self._setting
            try:
                if setting.mode == "refuse" and self._listener is not None:
                    self._listener.close()  # a real "connection refused"; backlogged connections get RST
                    self._listener = None
                elif setting.mode != "refuse" and self._listener is None:
                    self._listener = self._listen(self.port)
            except OSError as e:
                self._bind_error = e
                self._stopping.wait(POLL_S)
                continue
            with self._lock:
                self._applied_gen = setting.gen
                self._applied.notify_all()
            if self._listener is None:
                self._stopping.wait(POLL_S)
                continue
            if not select.select([self._listener], [], [], POLL_S)[0]:
                continue
            client, _ = self._listener.accept()
            with self._lock:
                if self._stopping.is_set():
                    client.close()
                    break
                self.connections += 1
                self._socks.add(client)
                self._conns.add(conn := _Conn(client, self._setting))
                self._spawn(self._serve, f"conn{self.connections}", conn)

    def _serve(self, c: _Conn) -> None:
        rst = False
        try:
            rst = self._loop(c)
        except (OSError, ValueError):
            rst = True  # a broken peer, an unreachable target or an unparseable request: drop the client hard
        finally:
            with self._lock:
                for s in (c.client, c.up):
                    if s is None:
                        continue
                    if rst and s is c.client:  # linger 0: close() sends RST, the peer sees ECONNRESET
                        with contextlib.suppress(OSError):
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                    self._socks.discard(s)
                self._conns.discard(c)
                self._applied.notify_all()

    def _loop(self, c: _Conn) -> bool:
        """Runs one connection; returns True to end it with a reset, False with a normal close."""
        watch_up = True
        while not self._stopping.is_set():
            socks = [c.client] + ([c.up] if c.up is not None and watch_up else [])
            for s in select.select(socks, [], [], POLL_S)[0]:
                data = s.recv(65536)
                if not data:
                    return False  # either side closed: close the other too (no half-open HTTP here)
                if s is c.client:
                    c.pending += data
                    c.used = True
                else:
                    self._send(c, "down", data)
            setting = self._setting  # read after recv, so bytes that raced a set() obey the new mode
            if setting.gen != c.gen:  # first look at a new setting
                c.budget = setting.after_bytes
                if setting.mode == "reset" and setting.after_bytes == 0 and c.used:
                    return True
            if setting.mode == "refuse" and (setting.drop_existing or not c.used):
                return False
            if setting.gen != c.gen:  # only now, after any close: set() waits for this
                with self._lock:
                    c.gen = setting.gen
                    self._applied.notify_all()
            watch_up = setting.mode != "stall"  # a stalled connection leaves the target's answer unread
            if setting.mode == "stall":
                continue
            if setting.mode == "reset":
                while c.pending and c.budget > 0:
                    n = self._feed(c, c.budget)[0]
                    c.budget -= n
                    self._send(c, "up", self._take(c, n))
                if c.pending:  # the client sent more than the budget
                    return True
                continue
            while c.pending:
                if c.parser.state == "idle":
                    c.swallow = setting.mode == "http_error"  # decided per request, at its first byte
                n, head, end = self._feed(c, len(c.pending))
                chunk = self._take(c, n)
                if not c.swallow:
                    self._send(c, "up", chunk)
                elif end or (head and c.parser.headers.get("expect", "").lower() == "100-continue"):
                    self._answer_error(c, setting)  # a final status instead of 100 Continue is valid HTTP
                    return False
        return False

    def _feed(self, c: _Conn, limit: int) -> tuple[int, bool, bool]:
        n, head, end = c.parser.feed(bytes(c.pending[:limit]))
        if head:
            with self._lock:
                self.requests += 1
                self.methods[c.parser.method] += 1
        return n, head, end

    @staticmethod
    def _take(c: _Conn, n: int) -> bytes:
        data = bytes(c.pending[:n])
        del c.pending[:n]
        return data

    def _send(self, c: _Conn, direction: str, data: bytes) -> None:
        setting = self._setting
        if direction == "up" and c.up is None:
            if setting.mode == "latency":
                self._stopping.wait(setting.delay_s)  # the TCP handshake's round trip
            up = socket.create_connection(self.target, timeout=5)
            up.settimeout(None)
            with self._lock:
                self._socks.add(up)
                c.up = up
        if setting.mode == "latency" and c.last_dir != direction:
            self._stopping.wait(setting.delay_s / 2)  # half a round trip each time the talking side changes
        c.last_dir = direction
        sock = c.up if direction == "up" else c.client
        assert sock is not None
        sock.sendall(data)
        with self._lock:
            if direction == "up":
                self.bytes_up += len(data)
            else:
                self.bytes_down += len(data)

    def _answer_error(self, c: _Conn, setting: _Setting) -> None:
        code, message = CODES.get(setting.status, CODES[500])
        rid = uuid.uuid4().hex[:16].upper()
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{setting.code or code}</Code><Message>{message}</Message>"
            f"<RequestId>{rid}</RequestId><HostId>edgevoice-fault-proxy</HostId></Error>"
        ).encode()
        head = (
            f"HTTP/1.1 {setting.status} {HTTPStatus(setting.status).phrase}\r\n"
            f"Content-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
            f"x-amz-request-id: {rid}\r\nConnection: close\r\n\r\n"
        ).encode()
        c.pending.clear()
        self._send(c, "down", head + (b"" if c.parser.method == "HEAD" else body))
        # Lingering close: closing with unread request bytes (an unsent 100-continue body) would send
        # RST and could destroy the response before the client reads it. Wait (2 s at most) for its FIN.
        c.client.shutdown(socket.SHUT_WR)
        for _ in range(int(2 / POLL_S)):
            if self._stopping.is_set() or (select.select([c.client], [], [], POLL_S)[0] and not c.client.recv(65536)):
                return
