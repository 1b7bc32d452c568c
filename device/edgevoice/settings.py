"""The settings themselves: frozen dataclasses, every field with a default and its documentation as the
string literal under it (wyoming-satellite style). `config.py` reads TOML into them and checks ranges;
`edgevoice config reference` renders the docstrings into the README's table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .errors import UserError


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

    echo_cancellation: bool = True
    """Cancel the speaker's own voice in what the microphone hears (WebRTC AEC3, fed with what was played,
    beside a linear filter that hears the user talking over an answer and stops it within 100 ms), so the
    user can interrupt. Off, or when `pywebrtc-audio` is missing: the `half_duplex` guard."""

    half_duplex: bool = True
    """Echo guard without echo cancellation: frames in the `echo_tail_ms` after playback are dropped unheard.
    Either way only gated turns reach the model, and a turn opening while the speaker plays is a barge-in."""

    echo_tail_ms: int = 300
    """How long after playback ends captured frames are still treated as echo (`half_duplex`)."""

    reopen_max_s: float = 1.0
    """Longest wait between attempts to reopen a vanished capture or playback device."""

    earcons: bool = True
    """Short generated sounds when the user summons the device (a button press or the wake word: it listens),
    when the connection to the model is lost, when it is back, and when the reset button starts a new
    conversation (each under 300 ms; never stored or sent to a model)."""


@dataclass(frozen=True)
class GateSettings:
    mode: Literal["vad", "push_to_talk", "wake_word"] = "vad"
    """`vad`: the webrtcvad + Silero cascade opens turns; `push_to_talk`: turns last while the button is held;
    `wake_word`: a turn opens when `wake_word` is heard, and the cascade ends it as in `vad`."""

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

    wake_word: str = "okay_nabu"
    """The built-in microWakeWord model `wake_word` mode listens for: `okay_nabu`, `alexa`, `hey_jarvis` or
    `hey_mycroft`."""

    wake_timeout_s: float = 4.0
    """In `wake_word` mode: a turn in which no speech follows the wake word within this long ends unanswered."""


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
    `local` ignores it. A private CA is trusted through `SSL_CERT_FILE` or `SSL_CERT_DIR` (every provider);
    otherwise Gemini and Nova Sonic trust the system's CA directory, `/etc/ssl/certs` (`models/castore.py`)."""

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
class SyncSettings:
    bucket: str = ""
    """S3 bucket the stored sessions are copied to (empty: sync off)."""

    prefix: str = "edgevoice"
    """Key prefix: a session goes to `<prefix>/<device_id>/session_<id>/...`, the store's own relative paths,
    which is what `S3SessionManager(prefix=f"{prefix}/{device_id}")` reads."""

    device_id: str = ""
    """This device's folder in the bucket (empty: the 32 hex digits of `/etc/machine-id`)."""

    endpoint_url: str = ""
    """An S3-compatible endpoint (`http://` or `https://`; empty: AWS's own for `region`)."""

    region: str = "us-east-1"
    """The bucket's AWS region."""

    sse: Literal["AES256", "aws:kms"] = "AES256"
    """Server-side encryption of every object: S3-managed keys, or a KMS key (`kms_key_id`)."""

    kms_key_id: str = ""
    """The KMS key (id, ARN or alias) for `sse = "aws:kms"`."""

    interval_s: float = 30.0
    """How often the sync service looks for new messages while the network is up (offline, it backs off)."""

    max_concurrency: int = 4
    """Uploads in flight at once."""

    max_bytes_per_s: int = 0
    """Bandwidth cap for uploads, bytes per second (0: none). Keeps a slow uplink free for the voice."""

    backoff_max_s: float = 300.0
    """Longest wait between attempts while S3 cannot be reached (from 1 s, doubling, cut by up to half at
    random so a fleet does not come back in step)."""

    def __post_init__(self) -> None:
        from .sync.names import check_sync_settings  # raises ConfigError naming the key

        check_sync_settings(self)


@dataclass(frozen=True)
class GpioSettings:
    talk_pin: str = ""
    """Push-to-talk button, a gpiozero pin name (`GPIO17`, `BOARD11`, `17`; empty: none). Held, it opens a
    turn; with `gate.mode = "vad"` it works beside the voice gate, with `push_to_talk` it is the only way in."""

    reset_pin: str = ""
    """Session-reset button (empty: none): held for `reset_hold_s`, it starts a new conversation at once.
    The old session stays on disk and is synced."""

    led_pin: str = ""
    """Status LED (empty: none): on while listening, slow blink thinking, fast blink speaking, a short flash
    every 2 s offline, very fast blink when the flash will not take the conversation; off while idle."""

    pull_up: bool = True
    """Buttons connect the pin to ground (internal pull-up on); false: to 3.3 V (pull-down)."""

    bounce_ms: int = 20
    """Button debounce time in ms (0: none)."""

    reset_hold_s: float = 2.0
    """How long the reset button must be held to start a new session (a short press does nothing)."""

    led_active_high: bool = True
    """The LED lights when its pin is high (false: wired to 3.3 V, lit when low)."""


@dataclass(frozen=True)
class ServiceSettings:
    status_file: str = ""
    """Where `edgevoice run` keeps what it is doing now (state, session, provider, last error, sync backlog)
    for `edgevoice status`, rewritten atomically on every change. Empty: `$RUNTIME_DIRECTORY/status.json`
    under systemd (the unit's `RuntimeDirectory=edgevoice`, so `/run/edgevoice/status.json`), none otherwise."""

    stop_timeout_s: float = 5.0
    """On SIGTERM: the longest the daemon takes to stop playback, flush the session store and exit."""


@dataclass(frozen=True)
class Settings:
    audio: AudioSettings = field(default_factory=AudioSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    local: LocalModelSettings = field(default_factory=LocalModelSettings)
    session: SessionSettings = field(default_factory=SessionSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    gpio: GpioSettings = field(default_factory=GpioSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
