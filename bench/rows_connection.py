"""Issue 11's connection rows: reconnect time after an endpoint kill, and a conversation through 20 drops.

Both run the daemon's voice loop in process against the OpenAI Realtime fake (bench/connection_rig.py: the
real `VoiceLoop`, `Connection`, `BidiAgent` with Strands' OpenAI model, durable store, offline fallback;
only the capture device and the speaker are stand-ins, so that time can be compressed).

- `connection.reconnect_s`: a connection that answered one turn is killed (TCP reset) while idle; a turn is
  spoken as soon as the daemon has noticed (it waits in the mic meanwhile). Value: kill to the first model
  audio of its answer, minus the backoff wait the connection actually slept (its BACKING_OFF phase, timed
  through `on_phase`). Anchor: the same loop's first connection, from its start (the turn already waiting)
  to its first model audio. A fresh loop per kill, so each is a first drop (a second one within 60 s goes
  to the offline fallback, which has no cloud audio to time); the backoff is the config's shortest (0.1 s,
  at most 1 s). Median over 9 kills (3 with --quick), after one that warms the process up.
- `connection.messages_*`: 60 turns (a 10-minute conversation at a turn every 10 s, replayed back to back)
  with 20 drops at seeded turns (`plan`), each a TCP reset (`kill`), a clean close (1000) or a hang (the
  fake stops reading and answering, and serves new connections again once the daemon has torn the hung
  one down), applied mid user turn (half the turn sent, the rest spoken in real time), mid answer (after
  its first audio delta) or idle (between turns). Time is compressed: `response_timeout_s` 1 s, backoff
  0.05 s to 0.2 s (below the config's range), the offline fallback's answers unpaced. --quick: 20 turns
  and 8 drops. The store on disk is then checked against every final transcript that reached the
  daemon's speaker, the fake's and the offline fallback's (`check`): lost = transcripts the speaker got
  that are not stored, plus turns that got neither an answer nor the spoken "lost the connection" notice;
  duplicated = a user or assistant message stored more often than the speaker got it. An answer cut by a
  drop never completes: Strands stores it as "[Transcript unavailable.]" and the user is told (README, "A
  turn cut off by a drop"); it counts as told, not lost. Numbering gaps and empty transcripts get a row.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Row
from bench.connection_rig import Kept, Rig, environment, fake_turns, until, utterances
from edgevoice.daemon.connection import Phase
from tests.fakes.openai import FakeOpenAIRealtime

BACKOFF = {"backoff_initial_s": 0.1, "backoff_max_s": 1.0}  # the shortest waits the config accepts
FAST_BACKOFF = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2}  # the conversation's time is compressed
KINDS = ("kill", "close", "hang")
STAGES = ("mid_user", "mid_answer", "idle")
SEED = 11
DROPS = 20
PLACEHOLDER = "[Transcript unavailable.]"  # Strands' text for a transcript that never completed
FRAME_S = 0.03


def rows(quick: bool) -> Iterator[Row]:
    with environment() as root:
        speech = utterances(root)
        yield from _reconnect_rows(quick, root, speech[0])
        yield from _conversation_rows(quick, root, speech)


# -- reconnect time ----------------------------------------------------------------------------------------
def _reconnect_rows(quick: bool, root: Path, turn: list[bytes]) -> Iterator[Row]:
    kills = 3 if quick else 9
    trials = [asyncio.run(_reconnect(root / f"kill{i}", turn)) for i in range(kills + 1)]
    trials = trials[1:]  # the first also loads what the process had not loaded yet (websockets, the model)
    anchor = statistics.median(a for a, _ in trials)
    value = statistics.median(v for _, v in trials)
    print(f"# connection.reconnect_s: {', '.join(f'{v:.3f}' for _, v in trials)}", file=sys.stderr)
    yield Row("connection.reconnect_s (openai fake, kill)", value, "s", anchor, "value <= 1.0")


async def _reconnect(root: Path, turn: list[bytes]) -> tuple[float, float]:
    """(first connection: start to first model audio, kill to first model audio minus the backoff slept)."""
    fake = FakeOpenAIRealtime(fake_turns(4), pace_s=0.05).start()
    rig = Rig(root, fake, **BACKOFF)
    try:
        started = time.monotonic()
        rig.turn(turn)  # spoken before the loop starts: it waits in the mic for the first connection
        rig.start()
        heard = rig.sink.model_audio_at
        _check(await until(lambda: bool(heard), 30), "no answer on the first connection", rig)
        anchor = heard[0] - started
        _check(await until(lambda: rig.settled and rig.loop.speaker.responses_done == 1, 30), "first turn", rig)

        def speak_once_noticed(old: Phase, new: Phase) -> None:
            if new is Phase.BACKING_OFF:
                asyncio.get_running_loop().call_soon(rig.turn, turn)

        rig.on_phase = speak_once_noticed
        before = len(heard)
        killed = time.monotonic()
        fake.kill()
        _check(await until(lambda: len(heard) > before, 30), "no answer after the kill", rig)
        phases = [(t, p) for t, p in rig.phases if t >= killed]
        _check(Phase.FALLBACK not in {p for _, p in phases}, "a first drop went to the fallback", rig)
        slept = sum(b[0] - a[0] for a, b in itertools.pairwise(phases) if a[1] is Phase.BACKING_OFF)
        return anchor, heard[before] - killed - slept
    finally:
        await rig.stop()
        fake.stop()


def _check(ok: bool, what: str, rig: Rig) -> None:
    if not ok:
        tail = "\n".join(Kept.lines[-20:])
        raise RuntimeError(f"bench connection: {what} (phase {rig.loop.connection.phase.value})\n{tail}")


# -- a conversation through drops ----------------------------------------------------------------------------
@dataclass
class Tally:
    applied: Counter[str] = field(default_factory=Counter)
    unsettled: list[int] = field(default_factory=list)  # turns neither answered nor told within the wait


def _conversation_rows(quick: bool, root: Path, speech: list[list[bytes]]) -> Iterator[Row]:
    # Quick: a third of the conversation, 8 drops (a hang costs 4 s whatever the compression: 1 s of silence
    # and the 3 s stop deadline, which websockets' close against a silent peer always runs out).
    turns, drops = (20, 8) if quick else (60, DROPS)
    t0 = time.monotonic()
    rig, tally = asyncio.run(_converse(root / "conversation", speech, turns, drops, SEED))
    c = check(rig)
    loop = rig.loop
    print(
        f"# connection conversation (seed {SEED}): {turns} turns, {drops} drops, in {time.monotonic() - t0:.0f} s,"
        f" drops {dict(tally.applied)}; {c.files} messages stored, {c.cut} answers cut by a drop, {loop.turns_lost}"
        f" turns told lost ({loop.notices.spoken} notices), reconnects {loop.connection.reconnects}, fallbacks"
        f" {loop.connection.fallbacks}; lost {c.lost} messages + {c.untold} untold turns, duplicated"
        f" {c.duplicated}, gaps {c.gaps}, empty {c.empty}",
        file=sys.stderr,
    )
    for line in c.details:
        print(f"# connection {line}", file=sys.stderr)
    if tally.unsettled:
        print(f"# connection: turns neither answered nor told in time: {tally.unsettled}", file=sys.stderr)
    name = f"(10-min conversation, {DROPS} drops)"
    yield Row(f"connection.messages_lost {name}", c.lost + c.untold, "messages", c.checked, "value == 0")
    yield Row(f"connection.messages_duplicated {name}", c.duplicated, "messages", c.checked, "value == 0")
    yield Row(f"connection.numbering_gaps {name}", c.gaps + c.empty, "files", c.files, "value == 0")


@dataclass
class Check:
    checked: int  # final transcripts the speaker got
    files: int  # message files on disk
    lost: int  # transcripts the speaker got that are not stored
    untold: int  # turns neither answered nor told they were lost
    duplicated: int  # messages stored more often than the speaker got them
    gaps: int  # numbers missing from message_0..n
    empty: int  # transcripts stored empty
    cut: int  # answers cut by a drop (stored as PLACEHOLDER)
    details: list[str]


def check(rig: Rig) -> Check:
    """The store on disk against what the daemon's speaker got (module docstring)."""
    numbers, messages = rig.stored()
    loop = rig.loop
    seen = Counter(loop.transcripts)  # every final transcript the speaker got, (role, text)
    stored = Counter((m["role"], _text(m)) for m in messages if m["role"] in ("user", "assistant") and _has_text(m))
    details = [f"lost: {k} got {n}, stored {stored[k]}" for k, n in seen.items() if n > stored[k]]
    details += [
        f"duplicated: {k} stored {n}, got {seen[k]}"
        for k, n in stored.items()
        if k[1] != PLACEHOLDER and n > max(seen[k], 1)
    ]
    return Check(
        checked=sum(seen.values()),
        files=len(numbers),
        lost=sum(max(0, n - stored[k]) for k, n in seen.items()),
        untold=max(0, loop.mic.turns_ended - loop.speaker.responses_done - loop.turns_lost),
        duplicated=sum(max(0, n - max(seen[k], 1)) for k, n in stored.items() if k[1] != PLACEHOLDER),
        gaps=numbers[-1] + 1 - len(numbers) if numbers else 0,
        empty=sum(1 for m in messages if _has_text(m) and not _text(m)),
        cut=stored["assistant", PLACEHOLDER],
        details=details,
    )


def _text(m: dict[str, Any]) -> str:
    return " ".join(str(b["text"]) for b in m["content"] if "text" in b).strip()


def _has_text(m: dict[str, Any]) -> bool:
    return any("text" in b for b in m["content"])


def plan(turns: int, drops: int, seed: int) -> dict[int, tuple[str, str]]:
    """Turn index -> (kind, stage): `drops` distinct turns after the first, seeded."""
    rng = random.Random(seed)
    return {i: (rng.choice(KINDS), rng.choice(STAGES)) for i in sorted(rng.sample(range(1, turns), drops))}


async def _converse(root: Path, speech: list[list[bytes]], turns: int, drops: int, seed: int) -> tuple[Rig, Tally]:
    fake = FakeOpenAIRealtime(fake_turns(2 * turns), pace_s=0.05).start()
    rig = Rig(root, fake, response_timeout_s=1.0, **FAST_BACKOFF)
    tally = Tally()
    unhangs: set[asyncio.Task[None]] = set()

    def connected() -> bool:
        return rig.loop.connection.phase is Phase.CONNECTED

    async def drop(kind: str, stage: str) -> None:
        tally.applied[f"{kind}/{stage}"] += 1
        if kind == "kill":
            fake.kill()
        elif kind == "close":
            fake.close(1000)
        else:
            fake.hang()
            unhangs.add(asyncio.create_task(unhang_once_noticed()))

    async def unhang_once_noticed() -> None:
        # The server recovers once the daemon has given up on the hung connection (its next one is served).
        await until(lambda: not connected(), 60, 0.01)
        fake.unhang()

    def streaming(items: int) -> bool:
        ms = list(fake.item_audio_ms.values())
        return len(ms) > items and ms[-1] > 0

    drops_at = plan(turns, drops, seed)
    rig.start()
    try:
        for i in range(turns):
            words = speech[i % len(speech)]
            kind, stage = drops_at.get(i, ("", ""))
            if kind and not await until(connected, 30, 0.005):
                tally.applied["skipped: the cloud never came back"] += 1
                kind = stage = ""
            if stage == "idle":
                await drop(kind, stage)
                if kind != "hang":  # the next turn comes seconds later, by when a reset or close is noticed
                    await until(lambda: not connected(), 0.5, 0.005)
            if stage == "mid_user":
                half = len(words) // 2
                before = fake.seen.audio_in
                rig.press(words[:half])  # the first half at once: the agent sends it as fast as it can
                if await until(lambda b=before: fake.seen.audio_in > b, 5):
                    await drop(kind, stage)
                else:
                    tally.applied["skipped: no audio reached the fake"] += 1
                for frame in words[half:]:  # the rest as the user speaks it, so a drop is noticed mid-turn
                    rig.loop.mic.handle(frame)
                    await asyncio.sleep(FRAME_S)
                rig.release()
            else:
                items = len(fake.item_audio_ms)
                rig.turn(words)
                if stage == "mid_answer":
                    if await until(lambda n=items: streaming(n), 10):
                        await drop(kind, stage)
                    else:
                        tally.applied["skipped: no answer streamed"] += 1
            if not await until(lambda: rig.settled, 30, 0.005):
                tally.unsettled.append(i)
            await asyncio.sleep(0.1)  # the user's pause before the next turn
        await until(lambda: rig.settled, 30)
    finally:
        for task in unhangs:
            task.cancel()
        await rig.stop()
        fake.stop()
    return rig, tally


if __name__ == "__main__":  # `python -m bench.rows_connection [--quick]`
    for r in rows(quick="--quick" in sys.argv):
        print(r.as_json())
