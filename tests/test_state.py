"""The daemon's state machine, driven event by event."""

from __future__ import annotations

import logging

import pytest

from edgevoice.daemon.state import Event, State, StateMachine


def test_one_exchange_and_barge_in() -> None:
    sm = StateMachine()
    seen: list[tuple[State, State]] = []
    sm.when_changed(lambda old, new: seen.append((old, new)))
    assert sm.fire(Event.TURN_STARTED) is State.LISTENING
    assert sm.fire(Event.TURN_ENDED) is State.THINKING
    assert sm.fire(Event.PLAYBACK_STARTED) is State.SPEAKING
    assert sm.fire(Event.BARGE_IN) is State.LISTENING
    assert sm.fire(Event.TURN_ENDED) is State.THINKING
    assert sm.fire(Event.RESPONSE_DONE) is State.IDLE  # answered with no audio
    assert [n for _, n in seen] == [
        State.LISTENING, State.THINKING, State.SPEAKING, State.LISTENING, State.THINKING, State.IDLE,
    ]


def test_events_that_do_not_apply_change_nothing() -> None:
    sm = StateMachine()
    seen: list[State] = []
    sm.when_changed(lambda _o, n: seen.append(n))
    for e in (Event.TURN_ENDED, Event.PLAYBACK_IDLE, Event.BARGE_IN, Event.RESPONSE_DONE, Event.MODEL_BACK):
        assert sm.fire(e) is State.IDLE
    assert seen == []


def test_model_loss_from_any_state() -> None:
    for first in (Event.TURN_STARTED, Event.PLAYBACK_STARTED):
        sm = StateMachine()
        sm.fire(first)
        assert sm.fire(Event.MODEL_LOST) is State.OFFLINE
        assert sm.fire(Event.TURN_STARTED) is State.OFFLINE
        assert sm.fire(Event.MODEL_BACK) is State.IDLE


def test_changes_are_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """An operator reads what the device does from the journal, which keeps INFO and up."""
    caplog.set_level(logging.INFO, logger="edgevoice.daemon.state")
    sm = StateMachine()
    sm.fire(Event.TURN_STARTED)
    sm.fire(Event.TURN_ENDED)
    sm.fire(Event.MODEL_LOST)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [
        "state idle -> listening on turn_started",
        "state listening -> thinking on turn_ended",
        "state thinking -> offline on model_lost",
    ]


def test_an_outage_is_one_change_each_way() -> None:
    """The connection fires MODEL_LOST once per outage and MODEL_BACK after the agent started again; the
    machine itself takes a repeated event calmly: one change each way, one INFO line each."""
    sm = StateMachine()
    seen: list[tuple[State, State]] = []
    sm.when_changed(lambda old, new: seen.append((old, new)))
    sm.fire(Event.MODEL_LOST)
    sm.fire(Event.MODEL_LOST)
    assert sm.fire(Event.TURN_ENDED) is State.OFFLINE
    assert sm.fire(Event.MODEL_BACK) is State.IDLE
    assert sm.fire(Event.MODEL_BACK) is State.IDLE
    assert seen == [(State.IDLE, State.OFFLINE), (State.OFFLINE, State.IDLE)]
