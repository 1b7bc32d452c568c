"""SIGKILL crash harness: real BidiAgent children append messages, the parent kills them at random.

A fork server (`python -m tests.crashkit serve FD`) imports Strands and the local model once
(importing strands costs ~0.8 s a process) with OpenBLAS held to one thread, so it has no threads
at fork time, and forks one child per kill. Each child restores the session through the manager
under test and a real `BidiAgent(LocalModel)`, reports what it restored, then sends text turns until
it is killed. An observer passed to the `BidiAgent` constructor (so Strands registers it before the
session manager: the hard case) writes one line per `MessageAddedEvent`/`MessageUpdatedEvent` to a
pipe the parent reads: what the parent read is "observed", and the next restore must hold it. The
same provider writes a "pre" line from a callback ordered ahead of every SDK hook, so the parent
knows the one write that may have been in flight at the kill (on disk or not: both are fine).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PRE_ORDER = -1000  # ahead of HookOrder.SDK_FIRST (-100): runs before any session manager
PHRASES = ("my name is alice", "what is my name", "hello", "call me bob", "who am i", "thank you")
CHILD_MAX_S = 60.0  # a child the parent lost stops on its own
EMPTY = hashlib.sha256(b"[]").hexdigest()[:16]  # content hash of a pending transcript (no blocks)

Msg = tuple[str, str, str]  # (tracking id, role, content hash) of one message, by its index


def content_hash(message: Any) -> str:
    blob = json.dumps(message.get("content"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_manager(kind: str, session_id: str, storage_dir: str) -> Any:
    """The session manager under test: "durable" (ours), "stock" (Strands' FileSessionManager) or
    "writebehind" (stock holding each message file back until the next one: a deliberately lossy
    store, to show that the harness catches an acknowledged message that never reached the disk)."""
    from strands.session.file_session_manager import FileSessionManager

    if kind == "durable":
        from edgevoice.session import DurableFileSessionManager

        return DurableFileSessionManager(session_id, storage_dir=storage_dir)
    if kind == "stock":
        return FileSessionManager(session_id, storage_dir=storage_dir)
    if kind == "writebehind":

        class WriteBehind(FileSessionManager):
            held: tuple[str, str, Any] | None = None

            def create_message(self, session_id: str, agent_id: str, session_message: Any, **kwargs: Any) -> None:
                held, self.held = self.held, (session_id, agent_id, session_message)
                if held is not None:
                    super().create_message(*held)

        return WriteBehind(session_id, storage_dir=storage_dir)
    raise ValueError(f"unknown session manager kind {kind!r}")


def messages_dir(storage_dir: str | Path, session_id: str) -> Path:
    return Path(storage_dir) / f"session_{session_id}" / "agents" / "agent_default" / "messages"


def disk_indices(storage_dir: str | Path, session_id: str) -> list[int]:
    d = messages_dir(storage_dir, session_id)
    names = os.listdir(d) if d.is_dir() else []
    return sorted(int(n[8:-5]) for n in names if n.startswith("message_") and n.endswith(".json"))


def quarantined_files(storage_dir: str | Path, session_id: str) -> list[str]:
    q = Path(storage_dir) / f"session_{session_id}" / "quarantine"
    return sorted(os.listdir(q)) if q.is_dir() else []


# -- child side: runs in a process forked by the server ---------------------------------------------


def _emit(fd: int, **line: Any) -> None:
    os.write(fd, (json.dumps(line, separators=(",", ":")) + "\n").encode())  # one write a line


def observer(fd: int) -> Any:
    """The hook provider whose lines make a message "observed"."""
    from strands.hooks import HookProvider, HookRegistry, MessageAddedEvent, MessageUpdatedEvent

    def line(kind: str) -> Any:
        def cb(event: MessageAddedEvent[Any] | MessageUpdatedEvent[Any]) -> None:
            m, ids = event.message, [x.get("tracking_id") for x in event.agent.messages]
            i = len(ids) - 1 - ids[::-1].index(m["tracking_id"])  # an added message is the last one
            e = "add" if isinstance(event, MessageAddedEvent) else "upd"
            _emit(fd, k=kind, e=e, i=i, t=m["tracking_id"], role=m["role"], h=content_hash(m))

        return cb

    class Observer(HookProvider):
        def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
            for event in (MessageAddedEvent, MessageUpdatedEvent):
                registry.add_callback(event, line("pre"), order=PRE_ORDER)
                registry.add_callback(event, line("obs"))

    return Observer()


async def _child(cmd: dict[str, Any], fd: int) -> None:
    import asyncio

    from strands.bidi import BidiAgent

    from edgevoice.models.local import LocalModel

    manager = make_manager(cmd["manager"], cmd["session"], cmd["storage"])
    agent = BidiAgent(model=LocalModel(pace_lead_s=None), session_manager=manager, hooks=[observer(fd)])
    report = getattr(manager, "scan_report", None)
    scan = dataclasses.asdict(report) if dataclasses.is_dataclass(report) and not isinstance(report, type) else None
    restored = [[m.get("tracking_id"), m["role"], content_hash(m)] for m in agent.messages]
    _emit(fd, k="restored", msgs=restored, scan=scan)
    if cmd["check_only"]:
        return
    await agent.start()
    _emit(fd, k="ready")
    events = agent.receive()
    deadline = time.monotonic() + CHILD_MAX_S
    turn = random.Random(cmd["seed"]).randrange(len(PHRASES))
    while time.monotonic() < deadline and os.getppid() == cmd["server"]:
        await agent.send(PHRASES[turn % len(PHRASES)])
        turn += 1
        while (await asyncio.wait_for(anext(events), 20))["type"] != "bidi_response_stop":
            pass
    raise RuntimeError("child was never killed")


def _run_child(cmd: dict[str, Any], fd: int) -> None:
    import asyncio

    code = 0
    try:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)  # the server's command and reply pipes are not the child's business
        os.dup2(null, 1)
        asyncio.run(_child(cmd, fd))
    except BaseException:
        _emit(fd, k="error", tb=traceback.format_exc())
        code = 1
    finally:
        os._exit(code)


def serve(fd: int) -> None:
    """The fork server: JSON commands on stdin, one JSON reply a line on stdout."""
    import strands.bidi
    import strands.session.file_session_manager

    import edgevoice.models.local
    import edgevoice.session.durable
    from edgevoice.models import stt

    del strands, edgevoice  # imported for the children: paid once, here
    stt.shared().load()
    child = 0
    for line in sys.stdin:
        cmd = json.loads(line)
        reply: dict[str, Any] = {}
        if cmd["cmd"] == "spawn":
            threads = len(os.listdir("/proc/self/task"))
            if threads != 1:
                reply = {"error": f"fork server has {threads} threads; a child could inherit a held lock"}
            else:
                child = os.fork()
                if child == 0:
                    _run_child({**cmd, "server": os.getppid()}, fd)
                reply = {"pid": child}
        elif cmd["cmd"] == "reap":
            _, status = os.waitpid(cmd["pid"], 0)
            child = 0
            _emit(fd, k="reaped", pid=cmd["pid"])  # lands after everything the child wrote
            reply = {"code": os.waitstatus_to_exitcode(status)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    if child:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


# -- parent side ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    round: int
    kind: str  # missing stale changed phantom gap dropped quarantined renumbered rewritten restore_failed
    detail: str
    index: int = -1
    observed: Msg | None = None
    restored: Msg | None = None


@dataclass
class CrashRun:
    manager: str
    kills: int = 0
    survived: int = 0  # kills after which the restore showed no violation
    violations: list[Violation] = field(default_factory=list)
    lost: int = 0  # observed messages not restored with their observed (or newer in-flight) content
    observed: int = 0  # observed add and update events
    in_write: int = 0  # kills that landed between the pre line and the observed line of a write
    inflight_on_disk: int = 0  # ...whose write was on disk at the restore all the same
    temp_removed: int = 0
    messages: int = 0  # messages in the sessions at the end
    seconds: float = 0.0

    def kinds(self) -> set[str]:
        return {v.kind for v in self.violations}


def apply(expected: list[Msg], event: dict[str, Any]) -> list[Msg]:
    """`expected` after one add or update event."""
    out = list(expected)
    msg: Msg = (event["t"], event["role"], event["h"])
    if event["e"] == "add":
        out.append(msg)
    elif event["i"] < len(out):
        out[event["i"]] = msg
    return out


@dataclass
class Truth:
    """What the parent knows of one session: its messages as last observed, and the one write that
    may have been in flight when the child died."""

    expected: list[Msg] = field(default_factory=list)
    inflight: dict[str, Any] | None = None
    seen: dict[str, set[str]] = field(default_factory=dict)  # every hash a tracking id ever had
    observed: int = 0

    def take(self, event: dict[str, Any]) -> None:
        self.seen.setdefault(event["t"], set()).add(event["h"])
        if event["k"] == "pre":
            self.inflight = event
            return
        if event["e"] == "add" and event["i"] != len(self.expected):
            raise RuntimeError(f"crash harness: observed add at {event['i']}, expected {len(self.expected)}")
        self.expected, self.inflight = apply(self.expected, event), None
        self.observed += 1

    def check(self, rnd: int, restored: list[Msg]) -> tuple[list[Violation], int]:
        """Violations of one restore and how many observed messages it lost; then adopts it."""
        want_all = self.expected
        alt = apply(want_all, self.inflight) if self.inflight else want_all
        out: list[Violation] = []
        for i, want in enumerate(want_all):
            got = restored[i] if i < len(restored) else None
            if got in (want, alt[i]):
                continue
            kind = "missing" if got is None else "changed"
            if got is not None and got[0] == want[0] and got[2] in self.seen.get(want[0], set()):
                kind = "stale"  # an older version of the same message
            out.append(Violation(rnd, kind, f"message {i}: observed {want}, restored {got}", i, want, got))
        lost = len(out)
        extra = restored[len(want_all) :]
        if extra and extra != alt[len(want_all) : len(want_all) + len(extra)]:
            out.append(Violation(rnd, "phantom", f"{len(extra)} unobserved messages restored: {extra[:2]}"))
        self.expected, self.inflight = list(restored), None
        return out, lost


def _scan_violations(rnd: int, scan: dict[str, Any] | None) -> list[Violation]:
    """A SIGKILL leaves the page cache intact: the scan must find nothing but temp files to do."""
    if scan is None:
        return []
    out = [Violation(rnd, "quarantined", f"{p}: {why}") for p, why in scan.get("quarantined", [])]
    if scan.get("renumbered"):
        out.append(Violation(rnd, "renumbered", f"{scan['renumbered']} messages renumbered"))
    out += [Violation(rnd, "rewritten", f"{p} rewritten") for p in scan.get("rewritten", [])]
    return out


class _Lines:
    """JSON lines from a file descriptor, with a deadline on each read."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next line; None when `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise EOFError("crash harness: pipe closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return dict(json.loads(line))


class CrashServer:
    """The fork server and the pipes to it; `with CrashServer() as s:` shares one between runs."""

    def __init__(self) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="crashkit")
        rfd, wfd = os.pipe()
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self.stderr_path = Path(self._scratch.name) / "server.stderr"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.crashkit", "serve", str(wfd)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                pass_fds=(wfd,),
            )
        os.close(wfd)
        self.obs = _Lines(rfd)
        assert self.proc.stdout is not None
        self._replies = _Lines(self.proc.stdout.fileno())

    def call(self, cmd: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        reply = self._replies.next(timeout)
        if reply is None or "error" in reply:
            raise RuntimeError(f"crash harness: fork server: {reply or 'no reply'}\n{self.stderr_tail()}")
        return reply

    def until(self, kind: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Lines up to the first of `kind`; a child's error line raises."""
        out = []
        while (line := self.obs.next(timeout)) is not None and line["k"] != kind:
            if line["k"] == "error":
                raise RuntimeError(f"crash harness: child failed:\n{line['tb']}")
            out.append(line)
        if line is None:
            raise RuntimeError(f"crash harness: no {kind!r} line within {timeout} s\n{self.stderr_tail()}")
        return out

    def stderr_tail(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        os.close(self.obs.fd)
        self._scratch.cleanup()

    def __enter__(self) -> CrashServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_kills(
    storage_dir: str | Path,
    kills: int,
    *,
    manager: str = "durable",
    seed: int = 7,
    window_s: float = 0.15,
    kills_per_session: int = 50,
    server: CrashServer | None = None,
) -> CrashRun:
    """`kills` rounds of: restore and check, text turns, SIGKILL at a moment uniform in [0, window_s)
    after the child starts its turns. A session grows across `kills_per_session` kills (the restore
    cost grows with it), then gets a last restore and check, and the next session starts."""
    rng = random.Random(seed)
    run = CrashRun(manager)
    t0 = time.monotonic()
    own = server is None
    srv = CrashServer() if server is None else server
    try:
        left, n = kills, 0
        while left > 0:
            per = min(left, kills_per_session)
            _session(srv, run, rng, str(storage_dir), f"crash{n}", per, window_s)
            left, n = left - per, n + 1
    finally:
        if own:
            srv.close()
    run.seconds = time.monotonic() - t0
    return run


def _session(
    server: CrashServer, run: CrashRun, rng: random.Random, storage: str, session: str, kills: int, window_s: float
) -> None:
    truth = Truth()
    on_disk: list[int] = []
    pid = 0
    try:
        for rnd in range(kills + 1):
            final = rnd == kills
            spawn = {"manager": run.manager, "session": session, "storage": storage, "check_only": final}
            pid = server.call({"cmd": "spawn", "seed": rng.random(), **spawn})["pid"]
            line = server.obs.next(30) or {"k": "nothing", "tb": "no line within 30 s"}
            if line["k"] == "error":  # the restore itself failed: this session is over
                server.call({"cmd": "reap", "pid": pid})
                pid = 0
                server.until("reaped")
                run.violations.append(Violation(rnd, "restore_failed", line["tb"].strip().splitlines()[-1]))
                run.lost += len(truth.expected)
                return
            if line["k"] != "restored":
                raise RuntimeError(f"crash harness: expected the restore, got {line}\n{server.stderr_tail()}")
            restored: list[Msg] = [(t, role, h) for t, role, h in line["msgs"]]
            inflight_landed = truth.inflight is not None and restored == apply(truth.expected, truth.inflight)
            found, lost = truth.check(rnd, restored)
            if rnd > 0:
                found += _scan_violations(rnd, line["scan"])
                if len(restored) != len(on_disk):
                    found.append(Violation(rnd, "dropped", f"{len(on_disk)} message files, {len(restored)} restored"))
                run.inflight_on_disk += inflight_landed
                run.survived += not found
                run.lost += lost
                run.violations += found
                run.temp_removed += (line["scan"] or {}).get("temp_removed", 0)
            if not final:
                for before in server.until("ready"):
                    truth.take(before)
                kill_at = time.monotonic() + rng.uniform(0, window_s)
                while (wait := kill_at - time.monotonic()) > 0:
                    if (seen := server.obs.next(wait)) is not None:
                        truth.take(seen)
                os.kill(pid, signal.SIGKILL)
            code = server.call({"cmd": "reap", "pid": pid})["code"]
            pid = 0
            for event in server.until("reaped"):
                truth.take(event)
            if code != (0 if final else -signal.SIGKILL):
                raise RuntimeError(f"crash harness: child exited with {code}\n{server.stderr_tail()}")
            if final:
                run.observed += truth.observed
                run.messages += len(restored)
                return
            run.kills += 1
            run.in_write += truth.inflight is not None
            found, on_disk = _disk_after_kill(rnd, storage, session, len(on_disk))
            run.violations += found
    except BaseException:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # never leave a child appending behind a failed run
        raise


def _disk_after_kill(rnd: int, storage: str, session: str, before: int) -> tuple[list[Violation], list[int]]:
    """Message files numbered without gaps, each new one holding its own id; nothing quarantined."""
    on_disk, out = disk_indices(storage, session), []
    if on_disk != list(range(len(on_disk))):
        out.append(Violation(rnd, "gap", f"message files after the kill end {on_disk[-5:]}"))
    for i in on_disk[before:]:
        try:
            got = json.loads((messages_dir(storage, session) / f"message_{i}.json").read_bytes())["message_id"]
        except (OSError, ValueError, KeyError) as e:
            got = repr(e)
        if got != i:
            out.append(Violation(rnd, "gap", f"message_{i}.json holds message_id {got}", i))
    if q := quarantined_files(storage, session):
        out.append(Violation(rnd, "quarantined", f"quarantine holds {q[:4]}"))
    return out, on_disk


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve(int(sys.argv[2]))
