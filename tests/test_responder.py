"""The offline model's answers: a pure function of (history, utterance, now)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from edgevoice.models.responder import (
    JOKES,
    NOT_CAUGHT,
    OFFLINE_CANNOT,
    Turn,
    history_from_messages,
    introduced_name,
    normalize,
    respond,
    user_name,
)

NOW = datetime(2025, 11, 25, 15, 7, tzinfo=timezone(timedelta(hours=1)))


def u(text: str) -> Turn:
    return Turn("user", text)


def a(text: str) -> Turn:
    return Turn("assistant", text)


def test_normalize_lowercases_strips_punctuation_and_expands_contractions() -> None:
    assert normalize("  What's   my NAME?! ") == "what is my name"
    assert normalize("I\u2019m Bob.") == "i am bob"
    assert normalize("My name's Alice") == "my name is alice"


@pytest.mark.parametrize(
    ("utterance", "name"),
    [
        ("My name is Alice.", "Alice"),
        ("my name is alice", "Alice"),
        ("Hello, my name's Bob", "Bob"),
        ("Call me Max.", "Max"),
        ("I'm Sophia.", "Sophia"),
        ("I am Zachary", "Zachary"),
        ("My name is Xyzzy.", "Xyzzy"),  # typed names need not be in the list
        ("I am tired.", None),  # "I am" only introduces a known name
        ("My name is not important.", None),
        ("What is my name?", None),
    ],
)
def test_introduced_name(utterance: str, name: str | None) -> None:
    assert introduced_name(utterance) == name


def test_introduction_is_acknowledged() -> None:
    assert respond([], "My name is Alice.", NOW) == "Nice to meet you, Alice."


def test_name_comes_from_history_latest_introduction_wins() -> None:
    history = [u("My name is Alice."), a("Nice to meet you, Alice."), u("Hello."), a("Hello, Alice.")]
    assert respond(history, "What is my name?", NOW) == "Your name is Alice."
    assert respond(history, "who am i", NOW) == "Your name is Alice."
    assert respond(history, "Do you remember my name?", NOW) == "Your name is Alice."
    history += [u("Actually, call me Bob."), a("Nice to meet you, Bob.")]
    assert respond(history, "what's my name", NOW) == "Your name is Bob."
    assert user_name(history) == "Bob"


def test_assistant_lines_never_give_the_user_a_name() -> None:
    history = [a("My name is Edge."), u("Hello.")]
    assert respond(history, "What is my name?", NOW).startswith("I don't know your name yet.")


def test_unknown_name() -> None:
    assert respond([], "What is my name?", NOW).startswith("I don't know your name yet.")


def test_time_and_date_use_the_clock() -> None:
    assert respond([], "What time is it?", NOW) == "It is 3:07 PM."
    assert respond([], "what is the time", NOW.replace(hour=0, minute=5)) == "It is 12:05 AM."
    assert respond([], "What time is it?", NOW.replace(hour=12, minute=0)) == "It is 12:00 PM."
    assert respond([], "What is the date?", NOW) == "Today is Tuesday, November 25, 2025."
    assert respond([], "What day is it?", NOW + timedelta(days=1)) == "Today is Wednesday, November 26, 2025."
    assert respond([], "what is today's date", NOW) == "Today is Tuesday, November 25, 2025."


def test_recall_repeats_the_last_user_utterance_that_was_not_a_recall_question() -> None:
    history = [u("My name is Alice."), a("Nice to meet you, Alice.")]
    history += [u("What time is it?"), a("It is 3:07 PM.")]
    assert respond(history, "What did I say before?", NOW) == "You said: What time is it?"
    history += [u("What did I say before?"), a("You said: What time is it?")]
    assert respond(history, "what did i just say", NOW) == "You said: What time is it?"
    assert respond([u("hello there")], "What did I say earlier?", NOW) == "You said: hello there."
    assert respond([], "What did I say before?", NOW) == "You haven't said anything before this."


def test_greetings_and_goodbyes_use_the_name_when_known() -> None:
    named = [u("My name is Alice."), a("Nice to meet you, Alice.")]
    assert respond([], "Hello.", NOW) == "Hello."
    assert respond(named, "Hello.", NOW) == "Hello, Alice."
    assert respond(named, "good morning", NOW) == "Hello, Alice."
    assert respond(named, "Goodbye.", NOW) == "Goodbye, Alice."
    assert respond([], "good night", NOW) == "Goodbye."


def test_small_talk() -> None:
    assert respond([], "Thank you.", NOW) == "You're welcome."
    assert respond([], "How are you?", NOW) == "I'm doing well, thank you."
    assert respond([], "Stop.", NOW) == "Okay."
    assert respond([], "yes", NOW) == "Okay."
    assert "offline" in respond([], "What can you do?", NOW)
    assert "offline" in respond([], "Help.", NOW)


def test_jokes_cycle_through_the_list_as_history_grows() -> None:
    history: list[Turn] = []
    told = []
    for _ in range(len(JOKES) + 1):
        joke = respond(history, "Tell me a joke.", NOW)
        told.append(joke)
        history += [u("Tell me a joke."), a(joke)]
    assert told[: len(JOKES)] == list(JOKES)
    assert told[-1] == JOKES[0]


def test_repeat_says_the_last_answer_again() -> None:
    history = [u("What time is it?"), a("It is 3:07 PM.")]
    assert respond(history, "Say that again.", NOW) == "It is 3:07 PM."
    assert respond([], "repeat that", NOW) == "I haven't said anything yet."


def test_fallback_and_nothing_heard() -> None:
    assert respond([], "Turn on the kitchen lights.", NOW) == "I heard: Turn on the kitchen lights."
    assert respond([], "", NOW) == NOT_CAUGHT
    assert respond([], " ?! ", NOW) == NOT_CAUGHT


def test_same_inputs_same_answer() -> None:
    history = [u("My name is Alice."), a("Nice to meet you, Alice.")]
    for text in ("What is my name?", "Tell me a joke.", "What did I say before?", "What time is it?"):
        assert respond(list(history), text, NOW) == respond(list(history), text, NOW)


def test_history_from_strands_messages() -> None:
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [{"text": "My name is Alice."}],
            "metadata": {"custom": {"bidi": {"kind": "transcript", "status": "complete"}}},
        },
        {
            "role": "assistant",
            "content": [{"text": "[Transcript unavailable.]"}],
            "metadata": {"custom": {"bidi": {"kind": "transcript", "status": "incomplete"}}},
        },
        {"role": "assistant", "content": [], "metadata": {"custom": {"bidi": {"status": "pending"}}}},
        {"role": "user", "content": [{"text": "what time is it"}, {"text": "please"}]},  # agent.send("...")
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "1", "name": "x", "input": {}}}]},
        {"role": "user", "content": [{"text": "   "}]},
        {"role": "assistant", "content": [{"text": "It is 3:07 PM."}], "tracking_id": "t"},
    ]
    assert history_from_messages(messages) == [
        u("My name is Alice."),
        u("what time is it please"),
        a("It is 3:07 PM."),
    ]


def _expand(rules: dict[str, str], expr: str) -> list[str]:
    """Every sentence of a JSGF expression (alternatives, groups, optionals, rule references)."""
    tokens = re.findall(r"<[^>]+>|[()\[\]|]|[a-z']+", expr)
    pos = 0

    def alternatives() -> list[str]:
        nonlocal pos
        out = sequence()
        while pos < len(tokens) and tokens[pos] == "|":
            pos += 1
            out += sequence()
        return out

    def sequence() -> list[str]:
        nonlocal pos
        out = [""]
        while pos < len(tokens) and tokens[pos] not in ("|", ")", "]"):
            tok = tokens[pos]
            pos += 1
            if tok in ("(", "["):
                inner = alternatives()
                pos += 1  # the closing bracket
                parts = [*inner, ""] if tok == "[" else inner
            elif tok.startswith("<"):
                parts = _expand(rules, rules[tok])
            else:
                parts = [tok]
            out = [f"{a} {b}".strip() for a in out for b in parts]
        return out

    return alternatives()


def test_every_sentence_the_recogniser_can_hear_gets_a_real_answer() -> None:
    from edgevoice.models import vocabulary

    text = re.sub(r"//[^\n]*", "", vocabulary.grammar())
    rules = {
        name: body for name, body in re.findall(r"(?:public\s+)?(<[^>]+>)\s*=\s*([^;]+);", text) if name != "<name>"
    }
    rules["<name>"] = "alice | bob"
    sentences = _expand(rules, rules["<utterance>"])
    assert len(sentences) > 50
    assert "my name is alice" in sentences and "what did i just say earlier" in sentences
    history = [u("My name is Alice."), a("Nice to meet you, Alice.")]
    for s in sentences:
        answer = respond(history, s, NOW)
        assert not answer.startswith("I heard") and answer != NOT_CAUGHT, s


def test_the_offline_fallback_says_what_it_cannot_answer_instead_of_echoing() -> None:
    now = datetime(2026, 11, 29, 14, 5)
    question = "What is the capital of Mongolia?"
    assert respond([], question, now) == "I heard: What is the capital of Mongolia."
    assert respond([], question, now, offline=True) == OFFLINE_CANNOT
    # What it can answer, it answers the same way offline.
    assert respond([], "what time is it", now, offline=True) == "It is 2:05 PM."
    assert respond([], "my name is Zoe", now, offline=True) == "Nice to meet you, Zoe."
