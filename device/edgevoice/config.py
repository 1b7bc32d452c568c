"""Settings: one TOML file into the frozen dataclasses of `settings.py`, every key optional.

Types, ranges and choices are checked here, each bad value in one line naming the key;
`edgevoice config reference` renders the fields' docstrings into the Markdown table in the README.
Secrets never live in the TOML: API keys come from the environment or a 0600 file it names.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

# Re-exported: `config.Settings`, `config.ConfigError` are how the rest of the code names them.
from .settings import AudioSettings as AudioSettings
from .settings import ConfigError as ConfigError
from .settings import GateSettings as GateSettings
from .settings import GpioSettings as GpioSettings
from .settings import LocalModelSettings as LocalModelSettings
from .settings import ModelSettings as ModelSettings
from .settings import ServiceSettings as ServiceSettings
from .settings import SessionSettings as SessionSettings
from .settings import Settings as Settings
from .settings import SyncSettings as SyncSettings

DEFAULT_PATH = Path("/etc/edgevoice/edgevoice.toml")
CONFIG_HELP = f"settings file (default: {DEFAULT_PATH}, if present)"
"""The `--config` help of every command that reads the settings."""

# Ranges and choices the types cannot say. Checked after type conversion.
_RANGES: dict[str, tuple[float, float]] = {
    "audio.rate": (8000, 192000),
    "audio.playback_rate": (8000, 192000),
    "audio.queue_frames": (2, 100000),
    "audio.echo_tail_ms": (0, 5000),
    "audio.reopen_max_s": (0.05, 60),
    "gate.webrtcvad_mode": (0, 3),
    "gate.threshold": (0.01, 0.99),
    "gate.foreground_db": (0, 12),
    "gate.start_frames": (1, 100),
    "gate.window_frames": (1, 100),
    "gate.preroll_ms": (0, 5000),
    "gate.hangover_ms": (30, 10000),
    "gate.max_utterance_s": (1, 600),
    "gate.wake_timeout_s": (0.5, 30),
    "local.words_per_minute": (80, 450),
    "session.max_bytes": (0, 2**53),
    "session.max_age_days": (0, 36500),
    "local.output_rate": (8000, 48000),
    "model.response_timeout_s": (1, math.inf),
    "model.idle_disconnect_s": (0, math.inf),
    "model.backoff_initial_s": (0.1, 600),
    "model.backoff_max_s": (1, 3600),
    "sync.interval_s": (1, 86400),
    "sync.max_concurrency": (1, 64),
    "sync.max_bytes_per_s": (0, 2**53),
    "sync.backoff_max_s": (1, 86400),
    "gpio.bounce_ms": (0, 1000),
    "gpio.reset_hold_s": (0.5, 30),
    "service.stop_timeout_s": (1, 60),
}
WAKE_WORDS = ("okay_nabu", "alexa", "hey_jarvis", "hey_mycroft")
"""The models pymicro-wakeword 2.5 ships (its `Model` enum), named here so that checking a config never
imports it (its TFLite runtime is for `wake_word` mode only)."""
_CHOICES: dict[str, tuple[Any, ...]] = {"audio.period_ms": (10, 20, 30), "gate.wake_word": WAKE_WORDS}


def _convert(key: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(f"config: {key} must be one of {', '.join(map(repr, choices))} (got {value!r})")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config: {key} must be true or false (got {value!r})")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config: {key} must be an integer (got {value!r})")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config: {key} must be a number (got {value!r})")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"config: {key} must be a string (got {value!r})")
        return value
    raise TypeError(f"unsupported annotation for {key}: {annotation!r}")  # a bug in this module


def _build(cls: type[Any], data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in fields:
            raise ConfigError(f"config: unknown key {key}")
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"config: {key} must be a table ([{key}])")
            kwargs[name] = _build(typing.cast(type, hint), value, f"{key}.")
            continue
        value = _convert(key, value, hint)
        if key in _RANGES:
            lo, hi = _RANGES[key]
            if not lo <= value <= hi:
                bounds = f"at least {lo:g}" if hi == math.inf else f"between {lo:g} and {hi:g}"
                raise ConfigError(f"config: {key} must be {bounds} (got {value!r})")
        if key in _CHOICES and value not in _CHOICES[key]:
            allowed = ", ".join(map(str, _CHOICES[key]))
            raise ConfigError(f"config: {key} must be one of {allowed} (got {value!r})")
        kwargs[name] = value
    return cls(**kwargs)


_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def validate_session_id(session_id: str, key: str = "session.session_id") -> str:
    """A session id that is safe as a directory name: no separators, no `..`, at most 128 characters."""
    if not _SESSION_ID.match(session_id) or ".." in session_id:
        raise ConfigError(
            f"config: {key} {session_id!r} must be 1-128 letters, digits, '.', '_' or '-' (no path separators or '..')"
        )
    return session_id


_PIN = re.compile(r"^(?:(?:GPIO|BCM|WPI|BOARD|J8:)?[0-9]{1,2})$")
"""gpiozero's pin names: a bare Broadcom number, or one prefixed by its numbering scheme or header."""


def _check_pins(g: GpioSettings) -> None:
    named: dict[str, str] = {}
    for key in ("talk_pin", "reset_pin", "led_pin"):
        pin = getattr(g, key)
        if not pin:
            continue
        if not _PIN.match(pin):
            raise ConfigError(
                f"config: gpio.{key} must be a gpiozero pin name such as GPIO17, BOARD11 or 17 (got {pin!r})"
            )
        if pin in named:
            raise ConfigError(f"config: gpio.{key} and gpio.{named[pin]} are the same pin ({pin})")
        named[pin] = key


def _cross_check(s: Settings) -> None:
    _check_pins(s.gpio)
    validate_session_id(s.session.session_id)
    validate_session_id(s.session.agent_id, "session.agent_id")
    if s.gate.start_frames > s.gate.window_frames:
        raise ConfigError(
            f"config: gate.start_frames must not exceed gate.window_frames "
            f"({s.gate.start_frames} > {s.gate.window_frames})"
        )
    from .apikeys import check_secret_file  # it raises ConfigError, defined here

    if s.model.api_key_file:
        check_secret_file(s.model.api_key_file)


def parse(text: str, source: str = "<string>") -> Settings:
    """Settings from TOML text; raises ConfigError with a one-line message."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {source} is not valid TOML ({e})") from None
    settings: Settings = _build(Settings, data, "")
    _cross_check(settings)
    return settings


def load(path: str | Path | None = None) -> Settings:
    """Settings from `path`; the default path may be absent (then every default applies)."""
    explicit = path is not None
    p = Path(path) if path is not None else DEFAULT_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config: {p} does not exist") from None
        return Settings()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config: {p} cannot be read ({e})") from None
    return parse(text, str(p))


def replace(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """A copy with some fields of some sections changed: replace(s, gate={"mode": "push_to_talk"})."""
    changed = {name: dataclasses.replace(getattr(settings, name), **values) for name, values in sections.items()}
    return dataclasses.replace(settings, **changed)


def field_docs() -> list[tuple[str, str, str, str]]:
    """(key, type, default, doc) for every field, from the docstrings under the fields."""
    import ast
    import inspect

    from . import settings

    tree = ast.parse(inspect.getsource(settings))
    docs: dict[tuple[str, str], str] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            body = node.body
            for a, b in itertools.pairwise(body):
                if (
                    isinstance(a, ast.AnnAssign)
                    and isinstance(a.target, ast.Name)
                    and isinstance(b, ast.Expr)
                    and isinstance(b.value, ast.Constant)
                    and isinstance(b.value.value, str)
                ):
                    docs[(node.name, a.target.id)] = " ".join(b.value.value.split())
    rows = []
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        obj = getattr(defaults, section.name)
        for f in dataclasses.fields(obj):
            hint = typing.get_type_hints(type(obj))[f.name]
            tname = (
                " | ".join(repr(a) for a in typing.get_args(hint))
                if typing.get_origin(hint) is Literal
                else hint.__name__
            )
            default = getattr(obj, f.name)
            rows.append(
                (
                    f"{section.name}.{f.name}",
                    tname,
                    repr(default)
                    if isinstance(default, str)
                    else str(default).lower()
                    if isinstance(default, bool)
                    else str(default),
                    docs.get((type(obj).__name__, f.name), ""),
                )
            )
    return rows
