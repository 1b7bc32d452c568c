"""Logging for the console script: what `-v` turns on, and a filter that keeps secrets out of the journal.

Two lines of defence, because the journal is readable by the `adm` group and gets pasted into bug reports:

1. `-v` turns on DEBUG for edgevoice's and Strands' own loggers only. Every other logger, in particular
   the wire loggers of the provider clients (websockets prints `Authorization: Bearer ...`, smithy prints
   the signed request with the AWS session token, httpx/httpcore/google_genai print headers), stays at
   INFO unless it is asked for by name: `edgevoice -v --debug-logger websockets run`. An allow-list
   rather than a deny-list, so a client library added later cannot start leaking by default.
2. `RedactingFilter` on the root handler rewrites every record that reaches it: the secret values this
   process has read (`register_secret`: API keys, the AWS keys of the environment and of boto's chain)
   and their long fragments, and patterns that look like credentials (`Bearer ...`, `x-goog-api-key`,
   `X-Amz-Security-Token`, `AKIA...`, `key=` query parameters), in the message, its args and the
   exception text. It is what catches a wire logger asked for by name and an exception whose text quotes
   a key.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import types
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from . import journal

REDACTED = "[REDACTED]"

# Loggers `-v` turns to DEBUG. Everything else stays at INFO unless named with --debug-logger.
OWN_LOGGERS = ("edgevoice", "strands")
CHATTY_LOGGERS = ("botocore", "boto3")
"""Libraries that log routine steps at INFO ("Found credentials in environment variables."): WARNING and
above only, unless named with --debug-logger."""

# Environment variables that hold secrets whether or not this run uses them: registered at setup so a
# library that reads one itself (boto's chain, google-genai, the OpenAI client) cannot log it either.
SECRET_ENV_VARS = (
    "OPENAI_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
)

# Shorter values are not credentials (and redacting e.g. "secret" everywhere would garble the log).
MIN_SECRET_LEN = 8
# A fragment this long of a registered secret is redacted too: messages are cut to a length
# (`daemon/connection.py` keeps 300 characters of a provider error), and a cut can fall inside a key.
MIN_FRAGMENT_LEN = 8

# A credential's value; `None`/`null` are left alone (a repr of an empty field is not a secret).
_VALUE = r"(?!None\b|null\b|Field\()[^\s'\"&,;<>()\[\]{}]+"
_SECRET_HEADERS = r"authorization|x-goog-api-key|x-api-key|x-amz-security-token|proxy-authorization|cookie"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization headers in any spelling: `Authorization: Bearer x`, `('Authorization', 'Bearer x')`.
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}"), rf"\1\2{REDACTED}"),
    # SigV4 `Authorization: AWS4-HMAC-SHA256 Credential=AKIA.../..., SignedHeaders=..., Signature=...`.
    (re.compile(r"(?i)\b(credential|signature)=" + _VALUE), rf"\1={REDACTED}"),
    # Named secrets as header, query parameter, keyword argument, dict or JSON entry.
    (
        re.compile(
            r"(?i)\b(x-goog-api-key|x-api-key|api[_-]?key|x-amz-security-token|x-amz-signature|"
            r"aws_session_token|aws_secret_access_key|aws_access_key_id|secret_access_key|access_key_id|"
            r"secret_key|access_key|session_token|security_token|access_token|refresh_token|client_secret|"
            r"password|token)(['\"]?\s*[:=]\s*(?:b?['\"])?)" + _VALUE
        ),
        rf"\1\2{REDACTED}",
    ),
    # smithy's header repr: `Field(name='X-Amz-Security-Token', value=['...'], kind=...)`.
    (
        re.compile(rf"(?i)(name=['\"](?:{_SECRET_HEADERS})['\"],\s*value=\[)(?:'[^']*'|\"[^\"]*\"|,\s*)*"),
        rf"\1'{REDACTED}'",
    ),
    # `?key=...` / `&key=...`: the Gemini REST style of passing the API key.
    (re.compile(r"(?i)([?&;]key=)" + _VALUE), rf"\1{REDACTED}"),
    # Credential shapes that need no label: AWS access key ids, Google API keys, OpenAI keys.
    (re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA|ANPA|AGPA)[A-Z0-9]{12,}\b"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), REDACTED),
)

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Redact `value` (and its long fragments) from every log record from now on."""
    global _secrets
    if not value:
        return
    # The stripped value and the raw one: a key read with a stray newline may be quoted either way.
    candidates = {value, value.strip()}
    with _lock:
        new = set(_secrets) | {c for c in candidates if len(c) >= MIN_SECRET_LEN}
        # Longest first, so a secret that contains another is redacted whole.
        _secrets = tuple(sorted(new, key=len, reverse=True))


def register_environment(environ: Mapping[str, str] | None = None) -> None:
    """Register the values of SECRET_ENV_VARS that are set."""
    env = os.environ if environ is None else environ
    for name in SECRET_ENV_VARS:
        register_secret(env.get(name))


def register_aws_credentials(session: Any) -> None:
    """Register the credentials a boto3 Session will sign with (env, ~/.aws, SSO, a role). botocore caches
    them, so nothing is resolved twice. Refreshed ones (a role's next session token) are not seen here; the
    patterns (X-Amz-Security-Token, ASIA...) are the defence for those."""
    creds = session.get_credentials()
    if creds is None:  # whatever signs says "no AWS credentials found" itself
        return
    frozen = creds.get_frozen_credentials()
    for value in (frozen.access_key, frozen.secret_key, frozen.token):
        register_secret(value)


def registered() -> tuple[str, ...]:
    return _secrets


def _forget_all() -> None:
    """Tests only: start again with no registered secrets."""
    global _secrets
    with _lock:
        _secrets = ()


def _redact_fragments(text: str, secret: str) -> str:
    # A fragment: text that starts like the secret and was cut, or ends like it and was cut at the front.
    head, tail = secret[:MIN_FRAGMENT_LEN], secret[-MIN_FRAGMENT_LEN:]
    if head in text:
        out, i = [], 0
        while (j := text.find(head, i)) >= 0:
            n = MIN_FRAGMENT_LEN
            while j + n < len(text) and n < len(secret) and text[j + n] == secret[n]:
                n += 1
            out += [text[i:j], REDACTED]
            i = j + n
        text = "".join(out) + text[i:]
    if tail in text:
        out, i = [], 0
        while (j := text.find(tail, i)) >= 0:
            start, n = j, MIN_FRAGMENT_LEN
            while start > i and n < len(secret) and text[start - 1] == secret[-n - 1]:
                start -= 1
                n += 1
            out += [text[i:start], REDACTED]
            i = j + MIN_FRAGMENT_LEN
        text = "".join(out) + text[i:]
    return text


def redact(text: str) -> str:
    """`text` with every registered secret, its long fragments, and credential-shaped values replaced."""
    secrets = _secrets
    # Whole values first (longest first), then fragments: a fragment of one secret must not break up
    # the whole of another.
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    for secret in secrets:
        text = _redact_fragments(text, secret)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record so that what any formatter prints from it has no secret in it.

    The message is formatted here (args included, they are where websockets puts header values) and
    stored back with no args; the exception and stack text are rendered here too and redacted, and
    `logging.Formatter` prints a record's `exc_text` instead of formatting `exc_info` again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad args for the format: keep both, redacted, rather than lose the record
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def setup(*, verbose: bool = False, debug_loggers: Iterable[str] = (), stream: TextIO | None = None) -> logging.Handler:
    """Configure the root logger for the console script; returns its (redacting) handler."""
    register_environment()
    handler: logging.Handler
    if stream is None and journal.stderr_is_journal() and os.path.exists(journal.SOCKET):
        # Under systemd: records with fields (session, state, reason); journald adds the time and the level.
        handler = journal.JournalHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.NOTSET)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in debug_loggers:
        logging.getLogger(name).setLevel(logging.DEBUG)
    _route_uncaught_exceptions()
    logging.captureWarnings(True)  # library warnings (gpiozero's pin factory fallbacks) through the filter too
    return handler


def _route_uncaught_exceptions() -> None:
    """Tracebacks that escape (the main thread, a thread) go through the redacting handler too:
    Python's default hooks print them to stderr, i.e. into the journal, unfiltered."""
    log = logging.getLogger("edgevoice")

    def excepthook(kind: type[BaseException], value: BaseException, tb: types.TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        log.critical("uncaught exception", exc_info=(kind, value, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread else "?"
        exc = (args.exc_type, args.exc_value, args.exc_traceback)
        log.error("uncaught exception in thread %s", name, exc_info=exc)

    sys.excepthook = excepthook
    threading.excepthook = thread_hook
