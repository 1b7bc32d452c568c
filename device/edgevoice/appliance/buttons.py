"""The two buttons, through gpiozero: push-to-talk (held: the user is talking) and session reset (held for
`gpio.reset_hold_s`: a new conversation).

gpiozero calls `when_*` from its own threads (the pin factory's edge watcher, the hold timer); each call
goes to the event loop with `loop.call_soon_threadsafe`, where the gate and the voice loop live. gpiozero
is imported only here, and only when a pin is configured, so a daemon without buttons does not pay for it.
On a Pi gpiozero picks its pin factory itself (lgpio first, Debian's `python3-lgpio`); tests hand it
gpiozero's `MockFactory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ..config import GpioSettings

log = logging.getLogger(__name__)


class Buttons:
    """Talk and reset buttons on the pins `gpio` names (either may be absent).

    `when_talk_pressed`/`when_talk_released` and `when_reset` are called on `loop`. `factory`: a gpiozero
    pin factory (None: gpiozero's own choice)."""

    def __init__(
        self,
        gpio: GpioSettings,
        loop: asyncio.AbstractEventLoop,
        *,
        when_talk_pressed: Callable[[], None],
        when_talk_released: Callable[[], None],
        when_reset: Callable[[], None],
        factory: Any = None,
    ) -> None:
        from gpiozero import Button

        self._loop = loop
        bounce = gpio.bounce_ms / 1000 if gpio.bounce_ms else None
        self.talk: Any = None
        self.reset: Any = None
        try:
            if gpio.talk_pin:
                self.talk = Button(gpio.talk_pin, pull_up=gpio.pull_up, bounce_time=bounce, pin_factory=factory)
                self.talk.when_pressed = self._on_loop(when_talk_pressed)
                self.talk.when_released = self._on_loop(when_talk_released)
            if gpio.reset_pin:
                self.reset = Button(
                    gpio.reset_pin,
                    pull_up=gpio.pull_up,
                    bounce_time=bounce,
                    hold_time=gpio.reset_hold_s,
                    pin_factory=factory,
                )
                self.reset.when_held = self._on_loop(when_reset)  # a short press does nothing
        except Exception:
            self.close()
            raise

    def _on_loop(self, fn: Callable[[], None]) -> Callable[[], None]:
        def call() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the daemon is stopping
                self._loop.call_soon_threadsafe(fn)

        return call

    def close(self) -> None:
        for button in (self.talk, self.reset):
            if button is not None:
                button.close()
        self.talk = self.reset = None
