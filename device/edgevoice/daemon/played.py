"""Barge-in bookkeeping: how much of an interrupted answer was really played, and its transcript cut to that.

Plain code with no Strands import (the speaker, which uses it, loads before Strands). The speaker tells
`PlayedAudio` what each answer (one model response, `bidi_response_start` to `bidi_response_stop`) handed
to the player, what a flush dropped, and which stored transcript messages belong to the answer. Per answer:

    played = handed to the player - dropped from the player's queue - the device buffer (see `flushed`)
    share  = played / received

`received` counts all of the answer's audio, also what still arrives after the flush and is muted: a model
goes on sending for a moment after it is told, and its transcript covers that audio too. The assistant
transcript is then cut to the same share of its characters, at a word boundary, and ends with `MARK`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

MARK = "\u2026"
"""Ends a transcript cut by a barge-in ("Once upon a…"); a transcript of which nothing was heard is MARK alone."""

_WORD = re.compile(r"\S+")
_RECENT = 32  # how far back a just-finished transcript is looked for in the agent's messages


@runtime_checkable
class Interruptible(Protocol):
    """A model that can be told about a barge-in the device detected (today: OpenAI Realtime)."""

    async def interrupt(self, played_ms: int) -> None:
        """Stop the answer being generated and keep only its first `played_ms` of audio as heard."""
        ...


@dataclass
class Answer:
    """One response of the model, as far as playback is concerned. Times are seconds of its audio."""

    response_id: str
    received_s: float = 0.0
    """All of its audio that arrived, played or muted."""
    queued_s: float = 0.0
    """What of it was handed to the player."""
    played_s: float | None = None
    """Set when a flush dropped some of it: how much was heard."""
    flushed: bool = False
    """A flush has accounted for everything it queued (what was not dropped then had been played)."""
    stopped: bool = False
    transcripts: list[str] = field(default_factory=list)
    """Tracking ids of its assistant transcript messages."""
    cut: set[str] = field(default_factory=set)
    """Those already rewritten."""

    @property
    def share(self) -> float:
        """The share of the answer that was heard, 0..1 (1 when it was never cut)."""
        if self.played_s is None or self.received_s <= 0:
            return 1.0
        return min(1.0, self.played_s / self.received_s)

    def pending_cuts(self) -> list[str]:
        """Transcript messages to rewrite now: once the answer was cut and has ended (its audio is all in)."""
        if self.played_s is None or not self.stopped:
            return []
        return [t for t in self.transcripts if t not in self.cut]

    def settled(self, playing: bool) -> bool:
        """Nothing more can happen to it: ended, cut if it had to be, and none of its audio left to flush."""
        return self.stopped and not self.pending_cuts() and (self.flushed or not playing)


class PlayedAudio:
    """The answers whose audio may still be in the player, newest last."""

    def __init__(self, keep: int = 8) -> None:
        self._foreign_s = 0.0  # notice audio queued since the last flush
        self._keep = keep
        self._answers: list[Answer] = []

    @property
    def answers(self) -> Sequence[Answer]:
        return self._answers

    def started(self, response_id: str, *, playing: bool) -> Answer:
        """A response began. `playing`: whether the player still plays (older answers may still be queued)."""
        kept = [a for a in self._answers if not a.settled(playing)]
        answer = Answer(response_id)
        self._answers = [*kept[-(self._keep - 1) :], answer]
        return answer

    def _current(self) -> Answer:
        if not self._answers:  # audio with no response around it: count it all the same
            self._answers.append(Answer(""))
        return self._answers[-1]

    def audio(self, seconds: float, *, queued: bool) -> None:
        """Audio of the current answer arrived; `queued`: handed to the player (else muted)."""
        answer = self._current()
        answer.received_s += seconds
        if queued:
            answer.queued_s += seconds

    def transcript(self, tracking_id: str) -> Answer | None:
        """An assistant transcript message (by tracking id) of the answer still open, else of the last one."""
        if not self._answers:
            return None
        answer = next((a for a in reversed(self._answers) if not a.stopped), self._answers[-1])
        answer.transcripts.append(tracking_id)
        return answer

    def stopped(self, response_id: str) -> Answer | None:
        """A response ended: all of its audio and transcripts are in."""
        answer = next((a for a in reversed(self._answers) if a.response_id == response_id), None)
        if answer is None and self._answers and not self._answers[-1].stopped:
            answer = self._answers[-1]  # a provider whose stop names another id than its start
        if answer is not None:
            answer.stopped = True
        return answer

    def connection_ended(self) -> None:
        """The agent's run ended: responses still open will never stop, so they count as ended (a flush of
        their audio still in the player cuts them at once)."""
        for answer in self._answers:
            answer.stopped = True

    def foreign(self, seconds: float) -> None:
        """Audio that is no answer's (a spoken notice) was queued after the answers': a flush drops it first."""
        self._foreign_s += seconds

    def flushed(self, dropped_s: float, buffered_s: float) -> list[Answer]:
        """The player was flushed: `dropped_s` of queued audio went unplayed. Returns the answers cut, newest
        first.

        What the device buffer held (`buffered_s`, played by no one after `snd_pcm_drop`) is unplayed too, but
        is counted only when the queue was not empty: the writer keeps the buffer full while it has audio to
        write, and with an empty queue the buffer may hold anything from nothing to all of it. So the played
        share errs by at most one device buffer (120 ms at the defaults), towards "heard".

        The queue holds the newest audio and the device buffer what came just before it: the unplayed time is
        taken from the newest answer back.
        """
        unplayed = dropped_s + (buffered_s if dropped_s > 0 else 0.0)
        # A notice queued after the answers is the newest audio: what the flush dropped was its first. (Audio of
        # an answer queued after a notice makes this err towards "heard", as above.)
        unplayed -= min(unplayed, self._foreign_s)
        self._foreign_s = 0.0
        cut: list[Answer] = []
        for answer in reversed(self._answers):
            if answer.flushed:
                continue
            answer.flushed = True
            lost = min(unplayed, answer.queued_s)
            unplayed -= lost
            if answer.queued_s > 0 and lost > 0:
                answer.played_s = answer.queued_s - lost
                cut.append(answer)
        return cut


def cut_text(text: str, share: float) -> str | None:
    """The words of `text` heard when `share` (0..1) of it was played, then MARK; None when every word was.

    A word counts as heard when its last letter lies within the share of the characters (punctuation after
    it does not count): speech time runs close to the number of characters, and a word cut half-way was not
    heard whole.
    """
    limit = max(0.0, share) * len(text)
    words = list(_WORD.finditer(text))
    heard = [w for w in words if w.start() + len(w.group().rstrip(string.punctuation) or w.group()) <= limit]
    if len(heard) == len(words):
        return None
    if not heard:
        return MARK
    return text[: heard[-1].end()].rstrip(string.punctuation + " ") + MARK


def transcript_text(message: Mapping[str, Any]) -> str | None:
    """The text of a stored assistant transcript message, or None for any other message."""
    if message.get("role") != "assistant":
        return None
    bidi = ((message.get("metadata") or {}).get("custom") or {}).get("bidi") or {}
    content = message.get("content") or []
    if bidi.get("kind") != "transcript" or len(content) != 1 or not isinstance(content[0].get("text"), str):
        return None
    text: str = content[0]["text"]
    return text


def find_transcript(messages: Sequence[Mapping[str, Any]], text: str) -> str | None:
    """The tracking id of the newest assistant transcript message holding `text`.

    Called at the transcript's `bidi_transcript_block` event, which Strands puts out right after it stored
    the finished message (`loop.py`, `_update_message(block.to_message())`): it is among the newest.
    """
    for message in reversed(messages[-_RECENT:]):
        if transcript_text(message) == text and isinstance(tracking_id := message.get("tracking_id"), str):
            return tracking_id
    return None


def find_message(messages: Sequence[Mapping[str, Any]], tracking_id: str) -> Mapping[str, Any] | None:
    return next((m for m in reversed(messages) if m.get("tracking_id") == tracking_id), None)


def cut_message(message: Mapping[str, Any], share: float) -> dict[str, Any] | None:
    """`message` (an assistant transcript) holding only the words of `share` of it, or None when nothing is
    cut. Same tracking id, so the store rewrites the message in place; `metadata.custom.edgevoice.played_share`
    records the share, so a cut transcript can be told from one that merely ends in an ellipsis."""
    text = transcript_text(message)
    cut = None if text is None else cut_text(text, share)
    if cut is None:
        return None
    metadata = dict(message.get("metadata") or {})
    metadata["custom"] = {**(metadata.get("custom") or {}), "edgevoice": {"played_share": round(share, 3)}}
    return {**message, "content": [{"text": cut}], "metadata": metadata}


def b64_size(data: str) -> int:
    """Bytes a base64 string decodes to, without decoding it (muted audio is only counted)."""
    return len(data) * 3 // 4 - data[-2:].count("=")
