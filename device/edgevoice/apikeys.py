"""API keys for the cloud providers: where they come from, what shape they must have, and the log filter.

A key comes from `model.api_key_file` (mode 0600 or stricter), from systemd's credentials
(`$CREDENTIALS_DIRECTORY/edgevoice_<VAR>`: the unit's `LoadCredential=edgevoice:/etc/edgevoice/credentials`
loads every file of that root-only directory), or the provider's environment variable. It
is stripped of surrounding whitespace (CRLF from another OS, a byte-order mark) and registered with the
log filter before anything can print it; a key that cannot be one (inner whitespace, control characters,
non-ASCII, empty) is a one-line ConfigError naming where it came from, never its value: a broken
Authorization header fails every reconnect with an error that quotes it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .config import ConfigError, ModelSettings


def check_secret_file(path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as e:
        raise ConfigError(f"config: model.api_key_file {path!r} cannot be read ({e.strerror})") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"config: model.api_key_file {path!r} must be mode 0600 or stricter (is {stat.S_IMODE(st.st_mode):04o})"
        )


API_KEY_ENV = {"openai_realtime": "OPENAI_API_KEY", "gemini_live": "GOOGLE_API_KEY"}


def read_api_key(settings: ModelSettings, env_var: str) -> str | None:
    """The provider's API key: from `api_key_file` when set, else from the systemd credential, else from the
    environment; None when absent.

    Stripped (CRLF from another OS), checked by check_api_key, registered with the log filter.
    """
    from .logs import register_secret

    if settings.api_key_file:
        path = settings.api_key_file
        source = f"model.api_key_file {path!r}"
        check_secret_file(path)
        return _read_key_file(path, source)
    credential = _credential_path(env_var)
    if credential is not None:
        return _read_key_file(str(credential), f"systemd credential {credential.name}")
    value = os.environ.get(env_var)
    if not value:  # unset or set empty (`VAR=` is how many env files unset a variable)
        return None
    register_secret(value)
    return check_api_key(value, env_var)


CREDENTIAL_PREFIX = "edgevoice_"
"""systemd names a file X of a `LoadCredential=edgevoice:DIR` directory `edgevoice_X`."""


def _credential_path(env_var: str) -> Path | None:
    """`$CREDENTIALS_DIRECTORY/edgevoice_<env_var>` when systemd passed that credential; else None. systemd
    makes the directory readable by the service alone, so its mode is not checked like api_key_file's."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / f"{CREDENTIAL_PREFIX}{env_var}"
    return path if path.is_file() else None


def _read_key_file(path: str, source: str) -> str:
    from .logs import register_secret

    try:
        raw = Path(path).read_bytes().decode("utf-8-sig")  # a Windows editor's BOM is not the key
    except OSError as e:
        raise ConfigError(f"config: {source} cannot be read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config: {source} is not UTF-8 text") from None
    register_secret(raw)
    return check_api_key(raw, source)


def check_api_key(raw: str, source: str) -> str:
    """`raw` stripped, or ConfigError naming `source` (never the value) when it cannot be an API key: a
    broken header fails every reconnect with an error that quotes it, key included."""
    key = raw.strip()
    if not key:
        raise ConfigError(f"config: {source} is empty")
    if not key.isascii():
        raise ConfigError(f"config: {source} has non-ASCII characters in the key")
    if any(not "!" <= c <= "~" for c in key):
        raise ConfigError(f"config: {source} has whitespace or control characters inside the key")
    return key


def check_provider_key(settings: ModelSettings) -> None:
    """The configured provider's key is usable when present (a build machine checks configs without keys;
    `run` says "needs OPENAI_API_KEY" when it builds the model)."""
    env_var = API_KEY_ENV.get(settings.provider)
    if env_var is not None:
        read_api_key(settings, env_var)
