"""The daemon's explicit state machine: plain code, driven by the voice loop, observed by the LED."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class State(enum.Enum):
    IDLE = "idle"
    """Waiting for speech (or the push-to-talk button)."""
    LISTENING = "listening"
    """A user turn is open; its audio goes to the model."""
    THINKING = "thinking"
    """The turn ended; waiting for the model's answer."""
    SPEAKING = "speaking"
    """The model's answer is playing."""
    OFFLINE = "offline"
    """The model cannot be reached."""


class Event(enum.Enum):
    TURN_STARTED = "turn_started"
    TURN_ENDED = "turn_ended"
    PLAYBACK_STARTED = "playback_started"
    PLAYBACK_IDLE = "playback_idle"
    RESPONSE_DONE = "response_done"
    BARGE_IN = "barge_in"
    TURN_DROPPED = "turn_dropped"
    """The open turn had no speech in it (a push-to-talk press, nothing said): back to idle, no answer."""
    MODEL_LOST = "model_lost"
    """The agent failed (fired by the connection, once per outage); from any state to offline."""
    MODEL_BACK = "model_back"
    """The agent started again after MODEL_LOST: fired only once the reconnect succeeded."""
    FALLBACK = "fallback"
    """The cloud is away and the offline model took over: the speaker answers again (offline -> idle)."""


# (state, event) -> next state. Pairs not listed leave the state unchanged.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.IDLE, Event.TURN_STARTED): State.LISTENING,
    (State.THINKING, Event.TURN_STARTED): State.LISTENING,
    (State.SPEAKING, Event.BARGE_IN): State.LISTENING,
    (State.SPEAKING, Event.TURN_STARTED): State.LISTENING,
    (State.LISTENING, Event.TURN_ENDED): State.THINKING,
    (State.LISTENING, Event.TURN_DROPPED): State.IDLE,
    (State.THINKING, Event.PLAYBACK_STARTED): State.SPEAKING,
    # A quick model (the offline one) can answer inside the gate's hangover, before the turn has ended.
    (State.LISTENING, Event.PLAYBACK_STARTED): State.SPEAKING,
    (State.THINKING, Event.PLAYBACK_IDLE): State.IDLE,
    (State.IDLE, Event.PLAYBACK_STARTED): State.SPEAKING,
    (State.SPEAKING, Event.PLAYBACK_IDLE): State.IDLE,
    (State.THINKING, Event.RESPONSE_DONE): State.IDLE,
    (State.OFFLINE, Event.MODEL_BACK): State.IDLE,
    (State.OFFLINE, Event.FALLBACK): State.IDLE,
}


class StateMachine:
    """Holds the current state; `fire(event)` moves it and tells the listeners."""

    def __init__(self) -> None:
        self.state = State.IDLE
        self._listeners: list[Callable[[State, State], None]] = []
        self._fired: list[Callable[[Event], None]] = []

    def when_changed(self, listener: Callable[[State, State], None]) -> None:
        """Call `listener(old, new)` on every change."""
        self._listeners.append(listener)

    def when_fired(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` on every event fired, before the state changes (the earcons)."""
        self._fired.append(listener)

    def fire(self, event: Event) -> State:
        for heard in self._fired:
            heard(event)
        new = State.OFFLINE if event is Event.MODEL_LOST else TRANSITIONS.get((self.state, event), self.state)
        if new is not self.state:
            old, self.state = self.state, new
            # INFO: an operator reads what the device is doing from the journal (no audio, no text here).
            log.info("state %s -> %s on %s", old.value, new.value, event.value, extra={"state": new.value})
            for listener in self._listeners:
                listener(old, new)
        return self.state
