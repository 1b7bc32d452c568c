"""What the gate decides, frame by frame: plain values the daemon acts on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TurnStarted:
    """A turn opened. `preroll` holds the frames from before the opening frame, oldest first;
    `start_sample` is the position of the first sample forwarded (pre-roll included); `summoned`: the user
    called the device (the push-to-talk button, or the wake word) and waits for it to listen, rather than
    just started talking (`vad`): the daemon answers a summons with the listening earcon."""

    preroll: list[bytes]
    start_sample: int
    summoned: bool = False


@dataclass(frozen=True, slots=True)
class TurnFrame:
    """One capture period of the open turn, to forward as it is."""

    frame: bytes


@dataclass(frozen=True, slots=True)
class TurnEnded:
    """The turn closed. `end_sample` is one past the last sample forwarded; `reason` is
    `silence` (hangover ran out), `max_length` (cut at gate.max_utterance_s), `released` (push-to-talk), or
    `empty`: a button-held turn in which webrtcvad heard no speech (a press and nothing said), or a wake word
    with nothing said after it within gate.wake_timeout_s. An empty turn is not the user's: nobody answers it
    (`daemon/mic.py` drops it)."""

    end_sample: int
    reason: str


GateEvent = TurnStarted | TurnFrame | TurnEnded
