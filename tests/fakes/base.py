"""What every provider fake shares: the scripted turn, and a websocket server on 127.0.0.1 in its own thread.

A fake runs its own event loop in a thread, so it serves an in-process BidiAgent (whose loop it must not
share: a hung fake must not hang the test) and a daemon in a subprocess alike. Every public method is
thread-safe and bounded in time. The hooks the supervision tests need:
- `close(code)`: a clean websocket close (close frame with `code`) of every open connection;
- `kill()`: an abrupt drop: TCP RST (SO_LINGER 0), no close frame, as when the network dies;
- `hang()`: the fake stops answering and reading (pings unanswered, sends pile up in the kernel buffers);
- `unhang()`: new connections are served again; the hung ones stay silent (the client must reconnect);
- `refuse = True`: new connections are dropped right after the handshake (the server is "down").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve


def tone(rate: int, ms: int = 100, level: int = 1000) -> bytes:
    """Recognisable S16_LE mono PCM: a square wave, so a test can tell the fake's audio from silence."""
    n = rate * ms // 1000
    return b"".join(struct.pack("<h", level if (i // 20) % 2 else -level) for i in range(n))


@dataclass
class Turn:
    """One exchange the fake plays once it has heard `trigger_bytes` of input audio (or a text message)."""

    user: str = "what time is it"
    """User transcript the fake reports."""
    assistant: str = "It is noon."
    """Assistant transcript of the spoken answer."""
    audio_chunks: int = 3
    """Audio deltas of the answer (100 ms each, at the provider's output rate)."""
    tool: tuple[str, dict[str, Any]] | None = None
    """A tool call (name, arguments) before the answer; the answer follows the tool result."""
    interrupt: bool = False
    """Barge-in: after the first audio delta the user talks over the answer, which is cut off."""
    barge_in_user: str = "stop"
    """What the user said over the answer (interrupt turns)."""
    trigger_bytes: int = 3200
    """Input audio that ends the user's turn (3200 bytes: 100 ms at 16 kHz)."""
    silence_ms: int = 0
    """With it, the turn ends only once the input also ends in this much digital silence: the end-of-turn
    padding `edgevoice run` sends after each gated turn (a real server's VAD hears the same)."""


@dataclass
class Recorded:
    """What a fake saw, for assertions. Appended to from the fake's thread; read after a wait."""

    connections: int = 0
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path, headers)
    messages: list[Any] = field(default_factory=list)  # every client message, decoded
    audio_in: int = 0  # bytes of input audio received
    tool_results: list[Any] = field(default_factory=list)
    turns_played: int = 0
    closed: list[str] = field(default_factory=list)  # how each connection ended, from the fake's side


class ThreadedFake:
    """A websocket server on 127.0.0.1 on a thread of its own. Subclasses implement `converse(ws)`."""

    def __init__(self, turns: list[Turn] | None = None, *, tls: ssl.SSLContext | None = None) -> None:
        self.turns = list(turns or [Turn()])
        self.seen = Recorded()
        self.refuse = False
        self._tls = tls
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._hung = False
        self._conns: set[ServerConnection] = set()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._stopping: asyncio.Event | None = None
        self._turn_index = 0
        self._silent_bytes = 0  # digital silence at the end of the input so far (`turn_ends`)
        self._voiced_bytes = 0  # sound since the last turn (`turn_ends`)
        self.port = 0

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> ThreadedFake:
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._server is None:
            return
        self._call(self._shutdown(), 10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> ThreadedFake:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        # No keepalive pings from the fake: a hung fake must look hung, and a client's own ping decides.
        async def open_server() -> Server:
            self._stopping = asyncio.Event()
            return await serve(self._handle, "127.0.0.1", 0, ssl=self._tls, ping_interval=None, max_size=None)

        self._server = loop.run_until_complete(open_server())
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None and self._stopping is not None
        self._stopping.set()
        for ws in list(self._conns):
            ws.transport.abort()
        self._server.close(close_connections=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    def _call(self, coro: Awaitable[Any], timeout: float = 10) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    # --- hooks -----------------------------------------------------------------------------------------
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Clean close of every open connection (a close frame with `code`). Returns once the frames are
        queued, without waiting for the client's answer: the client may run on the caller's own loop."""

        async def close_all() -> None:
            for ws in list(self._conns):
                self._tasks.add(asyncio.ensure_future(ws.close(code, reason)))

        self._call(close_all())

    def kill(self) -> None:
        """Abrupt drop of every open connection: RST, no close frame."""

        async def kill_all() -> None:
            for ws in list(self._conns):
                sock = ws.transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                ws.transport.abort()

        self._call(kill_all())

    def hang(self) -> None:
        """Stop answering: no more scripted output, no reads (so no pong and no close handshake)."""

        async def hang_all() -> None:
            self._hung = True
            for ws in list(self._conns):
                ws.transport.pause_reading()

        self._call(hang_all())

    def unhang(self) -> None:
        """The server answers again after `hang()`: connections opened from now on are served as usual.
        Those that were hung stay silent (reading paused, parked until `stop()`): a client must reconnect,
        as it must when a stalled server recovers but the sockets it stalled on are dead."""

        async def unhang_all() -> None:
            self._hung = False

        self._call(unhang_all())

    def wait(self, predicate: Callable[[Recorded], bool], timeout: float = 10) -> bool:
        """Poll `predicate(self.seen)` until true or `timeout` seconds passed."""
        done = threading.Event()
        for _ in range(int(timeout * 20)):
            if predicate(self.seen):
                return True
            done.wait(0.05)
        return predicate(self.seen)

    # --- scripted turns --------------------------------------------------------------------------------
    def turn_ends(self, pending: int, pcm: bytes, rate: int) -> bool:
        """Whether the input so far ends the next scripted turn: `pending` bytes since the last turn, the
        newest chunk `pcm` (S16_LE at `rate`). With `Turn.silence_ms`, the turn ends once `trigger_bytes` of
        sound (not digital silence) came since the last turn and the input now ends in that much silence."""
        if self._turn_index >= len(self.turns):
            return False
        turn = self.turns[self._turn_index]
        if not turn.silence_ms:
            return pending >= turn.trigger_bytes
        stripped = pcm.rstrip(b"\x00")
        if not stripped:
            self._silent_bytes += len(pcm)
        else:
            self._voiced_bytes += len(stripped)
            self._silent_bytes = (len(pcm) - len(stripped)) // 2 * 2
        if self._voiced_bytes < turn.trigger_bytes or self._silent_bytes * 1000 < turn.silence_ms * rate * 2:
            return False
        self._voiced_bytes = 0
        return True

    def next_turn(self) -> Turn | None:
        if self._turn_index >= len(self.turns):
            return None
        turn = self.turns[self._turn_index]
        self._turn_index += 1
        return turn

    async def _handle(self, ws: ServerConnection) -> None:
        self.seen.connections += 1
        assert ws.request is not None
        self.seen.requests.append((ws.request.path, dict(ws.request.headers.raw_items())))
        if self.refuse:
            ws.transport.abort()
            return
        self._conns.add(ws)
        try:
            await self.converse(ws)
            self.seen.closed.append(f"client closed ({ws.close_code})")
        except Exception as e:  # the client went away mid-send, or a hook dropped it
            self.seen.closed.append(f"{type(e).__name__}: {e}")
        finally:
            self._conns.discard(ws)
        if self._hung and self._stopping is not None:
            await self._stopping.wait()  # keep the socket open and silent until stop()

    async def converse(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    async def pause(self) -> None:
        """Between scripted messages: yields, and parks for good once the fake is hung."""
        await asyncio.sleep(0.005)
        if self._hung and self._stopping is not None:
            await self._stopping.wait()
            raise ConnectionAbortedError("fake stopped while hung")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
