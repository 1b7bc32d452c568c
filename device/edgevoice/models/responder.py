"""The offline model's answers: a pure function of (history, utterance, now) -> answer text."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from . import vocabulary

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str


JOKES = (
    "Why did the scarecrow win an award? Because he was outstanding in his field.",
    "I would tell you a joke about the network, but it is not answering right now.",
    "What do you call a fish with no eyes? A fsh.",
)
NOT_CAUGHT = "Sorry, I didn't catch that."
OFFLINE_FIRST = "I can't reach the cloud right now, so I'm answering offline."
"""Said before the first answer of an offline fallback: the user hears why the answers got simpler."""
OFFLINE_CANNOT = (
    "I'm offline, so I can't answer that right now. "
    "I can tell you the time and the date, remember your name, and tell a joke."
)
"""The fallback's answer to what only the cloud model could answer."""

_CONTRACTIONS = (
    (r"\bwhat's\b", "what is"),
    (r"\bi'm\b", "i am"),
    (r"\bname's\b", "name is"),
    (r"\bwho's\b", "who is"),
)
_INTRO = re.compile(r"\b(?:my name is|call me)\s+([a-z][a-z'-]*)")
_INTRO_I_AM = re.compile(r"\bi am\s+([a-z][a-z'-]*)")
_NOT_NAMES = frozenset({"not", "a", "an", "the", "what", "is", "your", "my", "no"})


def normalize(text: str) -> str:
    """Lower case, no punctuation, contractions expanded: how utterances are matched."""
    t = text.lower().replace("\u2019", "'")
    t = re.sub(r"[^a-z0-9' ]+", " ", t)
    for pattern, repl in _CONTRACTIONS:
        t = re.sub(pattern, repl, t)
    return " ".join(t.split())


def history_from_messages(messages: Iterable[Mapping[str, Any]]) -> list[Turn]:
    """Turns from Strands messages: text of user and assistant messages, skipping pending or
    unavailable transcripts and tool blocks."""
    turns = []
    for message in messages:
        role = message.get("role")
        if role not in ("user", "assistant"):
            continue
        bidi = (message.get("metadata") or {}).get("custom", {}).get("bidi", {})
        if bidi.get("status") in ("pending", "incomplete"):
            continue
        text = " ".join(b["text"] for b in message.get("content", []) if isinstance(b.get("text"), str)).strip()
        if text:
            turns.append(Turn(role, text))
    return turns


def introduced_name(utterance: str, names: frozenset[str] | None = None) -> str | None:
    """The name in "my name is Alice" / "call me Alice" / "I am Alice" (a known name only), if any."""
    t = normalize(utterance)
    m = _INTRO.search(t)
    if m and m.group(1) not in _NOT_NAMES:
        return m.group(1).capitalize()
    m = _INTRO_I_AM.search(t)
    known = vocabulary.names() if names is None else names
    if m and m.group(1) in known:
        return m.group(1).capitalize()
    return None


def user_name(history: Sequence[Turn], names: frozenset[str] | None = None) -> str | None:
    """The name the user gave most recently."""
    for turn in reversed(history):
        if turn.role == "user" and (name := introduced_name(turn.text, names)):
            return name
    return None


def respond(
    history: Sequence[Turn],
    utterance: str,
    now: datetime,
    *,
    names: frozenset[str] | None = None,
    offline: bool = False,
) -> str:
    """The answer to `utterance`, given the conversation before it and the local time. `offline`: the
    offline fallback of a cloud model, which says so rather than echo what it cannot answer."""
    t = normalize(utterance)
    if not t:
        return NOT_CAUGHT
    name = introduced_name(utterance, names)
    if name:
        return f"Nice to meet you, {name}."
    for pattern, answer in _INTENTS:
        if re.search(pattern, t):
            return answer(history, t, now, names)
    if offline:
        return OFFLINE_CANNOT
    return f"I heard: {utterance.strip().rstrip('.?!')}."


_Answer = Callable[[Sequence[Turn], str, datetime, "frozenset[str] | None"], str]


def _ask_name(history: Sequence[Turn], t: str, now: datetime, names: frozenset[str] | None) -> str:
    name = user_name(history, names)
    if name:
        return f"Your name is {name}."
    return "I don't know your name yet. Tell me by saying: my name is, and then your name."


def _recall(history: Sequence[Turn], t: str, now: datetime, names: frozenset[str] | None) -> str:
    for turn in reversed(history):
        if turn.role == "user" and not re.search(_RECALL, normalize(turn.text)):
            said = turn.text.strip()
            return f"You said: {said}" + ("" if said[-1] in ".?!" else ".")
    return "You haven't said anything before this."


def _time(history: Sequence[Turn], t: str, now: datetime, names: frozenset[str] | None) -> str:
    hour = now.hour % 12 or 12
    return f"It is {hour}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}."


def _date(history: Sequence[Turn], t: str, now: datetime, names: frozenset[str] | None) -> str:
    return f"Today is {now:%A}, {now:%B} {now.day}, {now.year}."


def _with_name(text: str) -> _Answer:
    def answer(history: Sequence[Turn], t: str, now: datetime, names: frozenset[str] | None) -> str:
        name = user_name(history, names)
        return f"{text}, {name}." if name else f"{text}."

    return answer


def _fixed(text: str) -> _Answer:
    return lambda history, t, now, names: text


def _joke(history: Sequence[Turn], t: str, now: datetime, names: frozenset[str] | None) -> str:
    told = sum(1 for turn in history if turn.role == "assistant" and turn.text in JOKES)
    return JOKES[told % len(JOKES)]


def _repeat(history: Sequence[Turn], t: str, now: datetime, names: frozenset[str] | None) -> str:
    for turn in reversed(history):
        if turn.role == "assistant":
            return turn.text
    return "I haven't said anything yet."


_RECALL = r"\bwhat did i (?:just )?say\b"
# First match wins; introductions are handled before these.
_INTENTS: tuple[tuple[str, _Answer], ...] = (
    (r"\bwhat is my name\b|\bwho am i\b|\b(?:know|remember) my name\b", _ask_name),
    (_RECALL, _recall),
    (r"\bwhat time is it\b|\bwhat is the time\b|\btell me the time\b", _time),
    (r"\bwhat is (?:the date|today's date)\b|\bwhat day is (?:it|today)\b|\btoday's date\b", _date),
    (r"\bjoke\b", _joke),
    (r"\bhow are you\b", _fixed("I'm doing well, thank you.")),
    (r"\bthank you\b|\bthanks\b", _fixed("You're welcome.")),
    (r"\bgoodbye\b|\bbye\b|\bgood night\b", _with_name("Goodbye")),
    (r"^(?:hello|hi|hey|good (?:morning|afternoon|evening))\b", _with_name("Hello")),
    (
        r"\bwhat can you do\b|^help\b",
        _fixed(
            "I'm working offline. I can remember your name, tell you the time and the date, "
            "repeat what you said, and tell a joke."
        ),
    ),
    (r"\brepeat that\b|\bsay that again\b", _repeat),
    (r"^(?:stop|be quiet|cancel)$", _fixed("Okay.")),
    (r"^(?:yes|no)$", _fixed("Okay.")),
)
