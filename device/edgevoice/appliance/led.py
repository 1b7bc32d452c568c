"""The status LED: what the daemon is doing, at a glance, through gpiozero's LED (blinking runs in
gpiozero's own background thread, so the event loop only says which pattern).

| state | pattern |
|---|---|
| idle | off |
| listening | on |
| thinking | slow blink (0.5 s on, 0.5 s off) |
| speaking | fast blink (0.15 s on, 0.15 s off) |
| offline (no model answers) | a short flash every 2 s |
| error (the flash will not take the conversation) | very fast blink (0.05 s on, 0.05 s off) |
"""

from __future__ import annotations

from typing import Any

from ..config import GpioSettings

PATTERNS: dict[str, tuple[float, float] | bool] = {
    "idle": False,
    "listening": True,
    "thinking": (0.5, 0.5),
    "speaking": (0.15, 0.15),
    "offline": (0.1, 1.9),
    "error": (0.05, 0.05),
}
"""Pattern name -> steady (True on, False off) or (on_s, off_s) blinking."""


def pattern_for(state: str, storage_problem: bool) -> str:
    """The pattern for the voice loop's state; trouble with the flash outranks everything but speech."""
    if storage_problem and state not in ("listening", "speaking"):
        return "error"
    return state if state in PATTERNS else "idle"


class StatusLed:
    def __init__(self, gpio: GpioSettings, *, factory: Any = None) -> None:
        from gpiozero import LED

        self._led: Any = LED(gpio.led_pin, active_high=gpio.led_active_high, initial_value=False, pin_factory=factory)
        self.pattern = "idle"

    def show(self, pattern: str) -> None:
        if pattern == self.pattern:
            return  # blink() restarts its cycle: the same pattern again must not stutter
        self.pattern = pattern
        how = PATTERNS[pattern]
        if how is True:
            self._led.on()
        elif how is False:
            self._led.off()
        else:
            on_s, off_s = how
            self._led.blink(on_time=on_s, off_time=off_s)

    def close(self) -> None:
        self._led.close()
