"""Checks of a loaded config that go beyond its types, without the hardware: `config check` and `run`.

Kept out of `config.parse`, which every command runs: asking espeak-ng for its voices is a subprocess,
and `edgevoice sessions` or `gate` have no business with audio devices, voices or the provider's API key.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

from .apikeys import check_provider_key
from .config import AudioSettings, ConfigError, Settings

ESPEAK = "espeak-ng"
_OTHER = re.compile(r"\(([^\s()]+) \d+\)")  # the "Other Languages" column: "(zh-cmn 5)(zh 5)"


def check_device_names(audio: AudioSettings) -> None:
    """An empty name would open alsa-lib's "" PCM, which never exists: say which key is empty."""
    for key, name in (("audio.capture_device", audio.capture_device), ("audio.playback_device", audio.playback_device)):
        if not name.strip():
            raise ConfigError(f"config: {key} is empty (name an ALSA PCM, e.g. 'default' or 'plughw:CARD=X,DEV=0')")


@functools.cache
def _listing(which: str) -> tuple[frozenset[str], ...]:
    """(languages, files, names) that `espeak-ng --voices[=variant]` lists, lower-cased."""
    out = subprocess.run([ESPEAK, f"--voices={which}" if which else "--voices"], capture_output=True, text=True,
                         timeout=30, check=True).stdout  # fmt: skip
    langs: set[str] = set()
    files: set[str] = set()
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 5:
            continue
        # Pty Language Age/Gender VoiceName File (other languages) ...
        langs.add(cols[1].lower())
        names.add(cols[3].lower())
        files.add(cols[4].lower())
        files.add(cols[4].rsplit("/", 1)[-1].lower())  # variants are named by the file's last part
        langs.update(m.lower() for m in _OTHER.findall(" ".join(cols[5:])))
    return frozenset(langs), frozenset(files), frozenset(names)


def check_voice(voice: str, key: str = "local.voice") -> None:
    """`voice` (`LANG` or `FILE`, optionally `+VARIANT`) is one espeak-ng has; else ConfigError naming `key`.

    Stricter than espeak-ng about the variant: it silently ignores one it does not have.
    """
    if shutil.which(ESPEAK) is None:
        raise ConfigError(f"config: {key} {voice!r} cannot be checked: {ESPEAK} is not installed")
    base, _, variant = voice.strip().partition("+")
    langs, files, _names = _listing("")
    if base.lower() not in langs and base.lower() not in files:
        raise ConfigError(f"config: {key} {voice!r} is not an espeak-ng voice (`{ESPEAK} --voices` lists them)")
    if variant:
        _l, vfiles, vnames = _listing("variant")
        if variant.lower() not in vfiles and variant.lower() not in vnames:
            raise ConfigError(
                f"config: {key} {voice!r}: no espeak-ng variant {variant!r} (`{ESPEAK} --voices=variant` lists them)"
            )


def check(settings: Settings, *, voice: bool = True) -> None:
    """Everything checkable without the hardware; raises ConfigError with one line naming the key."""
    check_device_names(settings.audio)
    check_provider_key(settings.model)  # the configured provider's key, where one is present
    if voice:
        check_voice(settings.local.voice)
