"""Settings: one TOML file into frozen dataclasses, every key optional.

Each field carries its documentation as the string literal under it (wyoming-satellite style);
`edgevoice config reference` renders those into the Markdown table in the README.
Secrets never live in the TOML: API keys come from the environment or a 0600 file it names.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import UserError

DEFAULT_PATH = Path("/etc/edgevoice/edgevoice.toml")


class ConfigError(UserError, ValueError):
    """A bad config value; the message is one line naming the key."""


@dataclass(frozen=True)
class AudioSettings:
    capture_device: str = "default"
    """ALSA PCM to capture from, by name (`default`, `plughw:CARD=Device,DEV=0`, or one from ~/.asoundrc)."""

    playback_device: str = "default"
    """ALSA PCM to play the model's voice on."""

    rate: int = 16000
    """Capture rate in Hz. The gate and the models work at 16 kHz; other rates are resampled."""

    playback_rate: int = 16000
    """Rate the playback PCM is opened at; model audio is resampled to it with soxr."""

    period_ms: int = 30
    """Capture period in ms: 10, 20 or 30 (webrtcvad's frame sizes)."""

    queue_frames: int = 100
    """Bound of the capture queue; when full, the oldest frame is dropped and counted."""

    half_duplex: bool = True
    """Echo guard: only gated turns ever reach the model, a turn opening while the speaker plays is a
    barge-in (playback stops), and frames in the `echo_tail_ms` after playback are dropped unheard."""

    echo_tail_ms: int = 300
    """How long after playback ends captured frames are still treated as echo."""

    reopen_max_s: float = 1.0
    """Longest wait between attempts to reopen a vanished capture or playback device."""


@dataclass(frozen=True)
class GateSettings:
    mode: Literal["vad", "push_to_talk"] = "vad"
    """`vad`: the webrtcvad + Silero cascade opens turns; `push_to_talk`: turns last while the button is held."""

    webrtcvad_mode: int = 2
    """webrtcvad aggressiveness, 0-3: the cheap first stage that decides when the judge runs."""

    judge: Literal["silero", "none"] = "silero"
    """Neural judge behind webrtcvad. `none` trusts webrtcvad alone (not recommended in noise)."""

    judge_backend: Literal["numpy", "onnx"] = "numpy"
    """How Silero runs: `numpy` (no extra runtime, small RSS) or `onnx` (onnxruntime, if installed)."""

    threshold: float = 0.5
    """Silero speech probability above which a chunk counts as speech."""

    foreground_db: float = 2.0
    """How far (dB) the last 90 ms must rise above the background's usual peaks to open a turn: the
    stage between webrtcvad and Silero that tells the near talker from quieter background talk."""

    start_frames: int = 3
    """N of N-of-M smoothing: speech frames needed in the window to open a turn."""

    window_frames: int = 5
    """M of N-of-M smoothing: the window, in frames, that `start_frames` is counted over."""

    preroll_ms: int = 400
    """Audio kept from before the turn opened and sent with it, so the first syllable is never clipped."""

    hangover_ms: int = 700
    """Non-speech needed to end a turn."""

    max_utterance_s: float = 30.0
    """A turn is cut after this long, whatever the judge says."""


@dataclass(frozen=True)
class ModelSettings:
    provider: Literal["local", "nova_sonic", "openai_realtime", "gemini_live"] = "local"
    """Which realtime model: the offline `local` model, or a cloud provider through Strands."""

    model_id: str = ""
    """Provider model id; empty picks the provider's default."""

    region: str = "us-east-1"
    """AWS region for Nova Sonic."""

    voice: str = ""
    """Provider voice name; empty picks the provider's default."""

    api_key_file: str = ""
    """File (mode 0600 or stricter) holding the API key for OpenAI or Gemini; otherwise
    OPENAI_API_KEY / GOOGLE_API_KEY from the environment. AWS uses its usual credential chain."""

    system_prompt: str = "You are a helpful voice assistant on a small speaker. Answer briefly."
    """Instructions given to the model at every connection."""

    endpoint: str = ""
    """Overrides the provider's URL (a proxy, a private endpoint, a test fake): for `openai_realtime` a
    `ws://` or `wss://` URL of the realtime endpoint (`?model=` is added), for `gemini_live` a base URL
    `https://host[:port]`, for `nova_sonic` an `https://` endpoint URI (HTTP/2). Empty: the provider's own;
    `local` ignores it. A private CA is trusted through `SSL_CERT_FILE` (OpenAI, Gemini)."""

    response_timeout_s: float = 15.0
    """A response that is due (the user's turn ended and reached the model) but shows no model event
    (audio, transcript, response start...) for this long means a hung connection: it is torn down and
    started again. Any value from 1 s up; idle connections never time out."""

    fallback: Literal["local", "none"] = "local"
    """While a cloud model cannot be reached, the offline `local` model answers (short, and saying it is
    offline); its turns go into the same session, and the cloud model gets them in its history once it is
    back (the switch happens between turns). `none`: no fallback; turns spoken while offline are answered
    by a short spoken notice."""

    idle_disconnect_s: float = 300.0
    """A cloud connection with nothing said or owed for this long is closed (providers bill connected
    time); the next utterance opens it again, with the whole history. 0: never close it."""

    backoff_initial_s: float = 1.0
    """The first wait before reconnecting after a failure; each further failure doubles it."""

    backoff_max_s: float = 30.0
    """The longest wait between reconnect attempts (every wait is cut by up to half at random)."""

    def __post_init__(self) -> None:
        # Checked here, beside the field, so `config check` and every Settings built in code agree.
        from .models.urls import check_endpoint  # raises ConfigError naming model.endpoint

        check_endpoint(self.provider, self.endpoint)
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError(
                f"config: model.backoff_max_s ({self.backoff_max_s:g}) must be at least "
                f"model.backoff_initial_s ({self.backoff_initial_s:g})"
            )


@dataclass(frozen=True)
class LocalModelSettings:
    voice: str = "en-us"
    """espeak-ng voice for the offline model's answers."""

    words_per_minute: int = 165
    """espeak-ng speaking rate."""

    output_rate: int = 16000
    """Rate of the audio the offline model emits."""


@dataclass(frozen=True)
class SessionSettings:
    dir: str = "/var/lib/edgevoice/sessions"
    """Where conversations are stored (Strands' FileSessionManager layout)."""

    session_id: str = "default"
    """Session id of the device's conversation; `edgevoice sessions reset` will start a new one."""

    agent_id: str = "edgevoice"
    """Agent id inside the session."""

    max_bytes: int = 0
    """Retention: cap on the total size of stored sessions (0: no cap). Only sessions already synced to S3
    are deleted, oldest first; the current session and unsynced ones never are."""

    max_age_days: float = 0
    """Retention: synced sessions whose last activity is older than this are deleted (0: keep forever)."""


@dataclass(frozen=True)
class Settings:
    audio: AudioSettings = field(default_factory=AudioSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    local: LocalModelSettings = field(default_factory=LocalModelSettings)
    session: SessionSettings = field(default_factory=SessionSettings)


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
    "local.words_per_minute": (80, 450),
    "session.max_bytes": (0, 2**53),
    "session.max_age_days": (0, 36500),
    "local.output_rate": (8000, 48000),
    "model.response_timeout_s": (1, math.inf),
    "model.idle_disconnect_s": (0, math.inf),
    "model.backoff_initial_s": (0.1, 600),
    "model.backoff_max_s": (1, 3600),
}
_CHOICES: dict[str, tuple[Any, ...]] = {"audio.period_ms": (10, 20, 30)}


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


def _cross_check(s: Settings) -> None:
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
    import sys

    tree = ast.parse(inspect.getsource(sys.modules[__name__]))
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
