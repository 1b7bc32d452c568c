"""The buttons and the LED, through gpiozero's MockFactory, driving the real daemon (`edgevoice run`'s own
main, in this process, on ALSA file PCMs): push-to-talk beside the voice gate and as the only way in, a
long press of reset starting a new session on disk while the conversation goes on, the LED following."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from edgevoice import config
from edgevoice.appliance.led import PATTERNS, StatusLed, pattern_for
from edgevoice.appliance.notify import Notifier
from edgevoice.daemon.state import Event, StateMachine
from edgevoice.session.current import read_current
from edgevoice.session.inspect import list_sessions, read_conversation
from tests.alsa import AsoundRc, alsa_home
from tests.audiogen import speak, to_s16

TALK, RESET, LED = 17, 27, 22
SECOND = 16000 * 2


@pytest.fixture
def alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    saved = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = saved


def setup_daemon(alsa: AsoundRc, tmp_path: Path, mic: bytes, mode: str = "vad", hold_s: float = 0.5) -> Path:
    (tmp_path / "mic.raw").write_bytes(mic)
    alsa.capture("mic", tmp_path / "mic.raw").playback("spk", tmp_path / "out.raw").write()
    cfg = tmp_path / "edgevoice.toml"
    cfg.write_text(
        f'[audio]\ncapture_device = "mic"\nplayback_device = "spk"\n[gate]\nmode = "{mode}"\n'
        f'[session]\ndir = "{tmp_path / "sessions"}"\n'
        f'[gpio]\ntalk_pin = "GPIO{TALK}"\nreset_pin = "GPIO{RESET}"\nled_pin = "GPIO{LED}"\nreset_hold_s = {hold_s}\n'
    )
    return cfg


def run_daemon(cfg: Path, seconds: float, script: Callable[[float], None]) -> None:
    """`edgevoice run --input-pace 1 --input-frames <seconds>` in this process; `script(t0)` runs in a
    thread from the moment the daemon is ready (t0: time.monotonic() then)."""
    from edgevoice.commands import run as run_cmd

    settings = config.load(cfg)
    ready = threading.Event()
    t0: list[float] = []
    notifier = Notifier(None)
    errors: list[BaseException] = []

    def drive() -> None:
        ready.wait(30)
        try:
            script(t0[0])
        except BaseException as e:
            errors.append(e)

    original = run_cmd.ready

    def on_ready(*args: Any) -> None:
        t0.append(time.monotonic())
        ready.set()
        original(*args)

    async def main() -> int:
        threading.Thread(target=drive, daemon=True).start()
        return await run_cmd._main(settings, 1.0, int(seconds * 1000 / 30), notifier)

    run_cmd.ready = on_ready  # type: ignore[assignment]
    try:
        assert asyncio.run(main()) == 0
    finally:
        run_cmd.ready = original  # type: ignore[assignment]
    if errors:
        raise errors[0]


def at(t0: float, seconds: float) -> None:
    time.sleep(max(0.0, t0 + seconds - time.monotonic()))


def turns_logged(caplog: pytest.LogCaptureFixture) -> int:
    (stats,) = [r.args for r in caplog.records if r.getMessage().startswith("stopped: {")]
    return int(stats["turns"])  # type: ignore[index,call-overload]  # logging keeps a lone dict arg as args


def user_texts(sessions: Path, session_id: str) -> list[str]:
    conv = read_conversation(sessions, session_id)
    return [c.get("text", "") for a in conv.agents for m in a.messages if m.role == "user" for c in m.content]


def test_push_to_talk_is_the_only_way_in(alsa: AsoundRc, pins: MockFactory, tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    speech = to_s16(speak("What is the date?", voice="en-us+m3", wpm=150))
    spoken = len(speech) / SECOND
    # Said twice: first without the button (push_to_talk: nobody listens), then with it held.
    mic = bytes(SECOND) + speech + bytes(2 * SECOND) + speech + bytes(6 * SECOND)
    cfg = setup_daemon(alsa, tmp_path, mic, mode="push_to_talk")
    second = 1 + spoken + 2

    def script(t0: float) -> None:
        at(t0, second - 0.3)
        pins.pin(TALK).drive_low()
        at(t0, second + spoken + 0.3)
        pins.pin(TALK).drive_high()

    run_daemon(cfg, second + spoken + 6, script)
    assert turns_logged(caplog) == 1
    assert user_texts(tmp_path / "sessions", "default") == ["What is the date?"]
    assert any(s.state for s in pins.pin(LED).states), "the LED lit while the user talked"


def test_the_button_holds_a_turn_beside_the_voice_gate(
    alsa: AsoundRc, pins: MockFactory, tmp_path: Path, caplog: Any
) -> None:
    """vad mode: a press opens a turn before any speech and holds it through a pause the voice gate alone
    would have ended it at (its 700 ms hangover); the release ends it. A press with nothing said is dropped."""
    caplog.set_level(logging.INFO)
    speech = to_s16(speak("Hello.", voice="en-gb+f3"))
    spoken = len(speech) / SECOND
    mic = bytes(3 * SECOND) + speech + bytes(6 * SECOND)
    cfg = setup_daemon(alsa, tmp_path, mic, mode="vad")
    press, release = 2.0, 3 + spoken + 2.0

    def script(t0: float) -> None:
        at(t0, 0.3)
        pins.pin(TALK).drive_low()  # pressed and let go with nothing said: dropped, no answer owed
        at(t0, 1.0)
        pins.pin(TALK).drive_high()
        at(t0, press)
        pins.pin(TALK).drive_low()
        at(t0, release)
        pins.pin(TALK).drive_high()

    run_daemon(cfg, 3 + spoken + 6, script)
    (stats,) = [r.args for r in caplog.records if r.getMessage().startswith("stopped: {")]
    assert stats["turns"] == 1  # type: ignore[call-overload,index]
    held_frames = (release - press) / 0.03
    assert stats["frames_sent"] >= held_frames - 10, stats  # type: ignore[call-overload,index]
    assert any("nothing was said in the turn" in r.getMessage() for r in caplog.records)
    assert user_texts(tmp_path / "sessions", "default") == ["Hello."]


def test_a_long_press_of_reset_starts_a_new_session_and_the_conversation_goes_on(
    alsa: AsoundRc, pins: MockFactory, tmp_path: Path
) -> None:
    first = to_s16(speak("My name is Alice.", voice="en-us"))
    second = to_s16(speak("What is my name?", voice="en-us+f2"))
    a, b = len(first) / SECOND, len(second) / SECOND
    mic = bytes(SECOND) + first + bytes(9 * SECOND) + second + bytes(6 * SECOND)
    cfg = setup_daemon(alsa, tmp_path, mic, hold_s=0.6)
    sessions = tmp_path / "sessions"
    reset_at = 1 + a + 6

    def script(t0: float) -> None:
        at(t0, 1 + a + 3)
        pins.pin(RESET).drive_low()  # a short press: nothing happens
        time.sleep(0.2)
        pins.pin(RESET).drive_high()
        at(t0, reset_at)
        pins.pin(RESET).drive_low()
        time.sleep(1.0)
        pins.pin(RESET).drive_high()

    run_daemon(cfg, 1 + a + 9 + b + 6, script)
    new = read_current(sessions)
    assert new is not None and new.startswith("default-"), new
    assert sorted(s.session_id for s in list_sessions(sessions)) == sorted(["default", new])
    assert user_texts(sessions, "default") == ["My name is Alice."]  # the old one, intact
    old = read_conversation(sessions, "default")
    assert [m.role for ag in old.agents for m in ag.messages] == ["user", "assistant"]
    assert user_texts(sessions, new) == ["What is my name?"]  # the conversation went on, in the new one
    answer = [
        c["text"]
        for ag in read_conversation(sessions, new).agents
        for m in ag.messages
        if m.role == "assistant"
        for c in m.content
    ]
    assert answer and "Alice" not in answer[0], "the new session starts with no history"


def test_the_led_follows_the_state(pins: MockFactory) -> None:
    led = StatusLed(config.GpioSettings(led_pin=f"GPIO{LED}"))
    pin = pins.pin(LED)
    sm = StateMachine()
    sm.when_changed(lambda _o, n: led.show(pattern_for(n.value, False)))
    assert not pin.state
    sm.fire(Event.TURN_STARTED)
    assert led.pattern == "listening" and pin.state
    sm.fire(Event.TURN_ENDED)
    assert led.pattern == "thinking"
    time.sleep(0.7)  # 0.5 s on, 0.5 s off
    assert {s.state for s in pin.states[-3:]} == {True, False}, "it blinks"
    sm.fire(Event.MODEL_LOST)
    assert led.pattern == "offline"
    sm.fire(Event.FALLBACK)
    assert led.pattern == "idle"
    time.sleep(0.05)
    assert not pin.state
    assert pattern_for("idle", True) == "error" and pattern_for("speaking", True) == "speaking"
    assert set(PATTERNS) == {"idle", "listening", "thinking", "speaking", "offline", "error"}
    led.close()
    # Active low: lit means the pin is low.
    led = StatusLed(config.GpioSettings(led_pin="GPIO5", led_active_high=False))
    led.show("listening")
    assert pins.pin(5).state is False or pins.pin(5).state == 0
    led.close()


def test_pins_that_cannot_be_used_leave_the_speaker_working(alsa: AsoundRc, tmp_path: Path, caplog: Any) -> None:
    """No GPIO here without the mock: gpiozero cannot find a pin factory; the daemon logs it and goes on."""
    caplog.set_level(logging.INFO)
    saved = Device.pin_factory
    Device.pin_factory = None
    try:
        cfg = setup_daemon(alsa, tmp_path, bytes(3 * SECOND))
        run_daemon(cfg, 2, lambda t0: None)
    finally:
        Device.pin_factory = saved
    assert any("gpio: buttons and LED are off" in r.getMessage() for r in caplog.records)
