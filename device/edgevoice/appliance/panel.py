"""The front panel as a service beside the voice loop: the buttons drive the mic and the session switch,
the LED follows the state. Built on the loop when the service starts (the buttons' callbacks hop to it)
and closed when it is cancelled. Pins that cannot be used (no GPIO chip, a pin taken) are logged once and
the speaker goes on without its panel: a broken button must not silence the device."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..daemon.state import State
    from ..daemon.voice import VoiceLoop
    from .status import Status

log = logging.getLogger(__name__)

LED_REFRESH_S = 1.0
"""How often the LED looks at the store's trouble, which comes and goes without a state change."""


class Panel:
    """`factory`: gpiozero's pin factory (None: its own choice; tests pass `MockFactory`)."""

    def __init__(self, voice: VoiceLoop, status: Status | None = None, *, factory: Any = None) -> None:
        self._voice = voice
        self._status = status
        self._factory = factory
        self.buttons: Any = None
        self.led: Any = None

    @property
    def wanted(self) -> bool:
        g = self._voice.settings.gpio
        return bool(g.talk_pin or g.reset_pin or g.led_pin)

    async def run(self) -> None:
        try:
            self._build()
        except Exception as e:  # gpiozero's BadPinFactory, PinInUse, a missing /dev/gpiochip0 ...
            log.error("gpio: buttons and LED are off: %s: %s", type(e).__name__, e)
            self._close()
            return
        try:
            while True:
                if self.led is not None:
                    self._follow()
                await asyncio.sleep(LED_REFRESH_S)
        finally:
            self._close()

    def _build(self) -> None:
        from .buttons import Buttons
        from .led import StatusLed

        g = self._voice.settings.gpio
        if g.talk_pin or g.reset_pin:
            mic = self._voice.mic
            self.buttons = Buttons(
                g,
                asyncio.get_running_loop(),
                when_talk_pressed=mic.press,
                when_talk_released=mic.release,
                when_reset=self._voice.new_session,
                factory=self._factory,
            )
        if g.led_pin:
            self.led = StatusLed(g, factory=self._factory)
            self._voice.state.when_changed(self._follow)

    def _follow(self, _old: State | None = None, new: State | None = None) -> None:
        from .led import pattern_for

        if self.led is None:
            return
        state = (new or self._voice.state.state).value
        trouble = self._status is not None and self._status.facts.storage is not None
        self.led.show(pattern_for(state, trouble))

    def _close(self) -> None:
        for part in (self.buttons, self.led):
            if part is not None:
                part.close()
        self.buttons = self.led = None
