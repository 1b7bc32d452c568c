"""alsa-lib through ctypes: its error messages into logging, and whether a PCM name is defined at all.

alsa-lib prints every error to stderr itself (`ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM
x`). A daemon that retries an absent USB mic every second would write two such lines a second into the
journal forever, so `install_error_handler()` routes them into Python logging, each message at most once
a minute with a count of the ones left out.

An open that fails says ENOENT both for a name no configuration defines (a typo: a config error) and for
a defined device whose card or file is absent (a USB mic not plugged in yet: wait for it); even the
message "Unknown PCM default" is printed for both when there is no card. `pcm_defined()` asks the
configuration tree the question alsa-lib's own `snd_config_search_definition` asks before it expands
the definition, so it tells the two apart without opening anything.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("edgevoice.alsa")

REPEAT_WINDOW_S = 60.0
"""The same message is logged at most once in this window; the next one carries the count left out."""

_MAX_KEYS = 256  # distinct messages remembered for rate limiting; older ones are forgotten
_EXTRA_ARGS = 6  # variadic argument slots read for formatting (alsa-lib's messages use a few)
# Conversions that read one pointer-sized argument slot: safe to hand to snprintf from the slots.
# (No %lld/%f: 64-bit integers on 32-bit ARM and doubles travel differently; those keep the bare format.)
_SPEC = re.compile(r"%(?:%|[-+ #0]*(?:\d+)?(?:\.\d+)?(?:hh|h|l|z|t)?([diouxXcsp])|.)")

_lib: ctypes.CDLL | None = None
_libc: ctypes.CDLL | None = None
_handler: object = None  # the C callback; kept referenced so it is never collected while installed
_lock = threading.Lock()
_seen: dict[tuple[str, str], list[float]] = {}  # (where, text) -> [logged_at, suppressed]
_local = threading.local()  # .quiet: this thread reports its own device failures (see `quiet`)

# void handler(const char *file, int line, const char *function, int err, const char *fmt, ...).
# ctypes cannot take a C variadic callback; on x86-64 and AArch64 Linux variadic integer/pointer
# arguments travel exactly like fixed ones (registers, then stack), so declaring extra pointer slots
# reads them. They are only used for conversions that take one integer-sized argument. alsa-lib
# 1.2.15 and newer format the message themselves and call the handler with "%s" and the text.
_HANDLER_T = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
    *([ctypes.c_void_p] * _EXTRA_ARGS),
)  # fmt: skip


def _libasound() -> ctypes.CDLL | None:
    global _lib
    if _lib is None:
        try:
            _lib = ctypes.CDLL("libasound.so.2")  # the library pyalsaaudio is linked against
        except OSError:
            return None
    return _lib


def _format(fmt: bytes, args: tuple[int | None, ...]) -> str:
    specs = [m.group(1) for m in _SPEC.finditer(fmt.decode("utf-8", "replace")) if m.group(0) != "%%"]
    if len(specs) > len(args) or any(s is None for s in specs):
        return fmt.decode("utf-8", "replace")  # a conversion that cannot be read safely: the bare format
    buf = ctypes.create_string_buffer(512)
    _c().snprintf(buf, ctypes.c_size_t(len(buf)), fmt, *[ctypes.c_void_p(a) for a in args[: len(specs)]])
    return buf.value.decode("utf-8", "replace")


def _on_error(file: bytes | None, line: int, function: bytes | None, err: int, fmt: bytes | None, *args: int) -> None:
    # alsa-lib reads errno after reporting: pcm_file.c does `SYSERR("open %s ..."); return -errno;`.
    # Python code here can change errno, and a 0 there turns a failed open into a "success" with no
    # PCM (a segfault, seen with alsa-lib 1.2.8). SYSERR passes errno as `err`; SNDERR passes 0, so
    # errno is saved on entry and put back on the way out.
    errno_at = _errno_location()
    saved = errno_at[0] if errno_at else 0
    try:
        text = _format(fmt or b"", args).strip()
        if err:
            text += f": {_strerror(err)}"
        where = f"{(file or b'?').decode(errors='replace')}:{line}:({(function or b'?').decode(errors='replace')})"
        _emit(where, text)
    except Exception:  # an exception must never unwind into alsa-lib's C frames
        pass
    finally:
        if errno_at:
            errno_at[0] = err if err > 0 else saved


def _errno_location() -> ctypes._Pointer[ctypes.c_int] | None:
    libc = _c()
    try:
        fn = libc.__errno_location
    except AttributeError:
        return None
    fn.restype = ctypes.POINTER(ctypes.c_int)
    fn.argtypes = []
    ptr: ctypes._Pointer[ctypes.c_int] = fn()
    return ptr


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None)
    return _libc


def _strerror(err: int) -> str:
    lib = _libasound()
    if lib is None:
        return str(err)
    lib.snd_strerror.restype = ctypes.c_char_p
    msg = lib.snd_strerror(ctypes.c_int(err))
    return msg.decode(errors="replace") if msg else str(err)


def _emit(where: str, text: str) -> None:
    key = (where, text)
    now = time.monotonic()
    with _lock:
        entry = _seen.get(key)
        if entry is not None and now - entry[0] < REPEAT_WINDOW_S:
            entry[1] += 1
            return
        suppressed = int(entry[1]) if entry is not None else 0
        if entry is None and len(_seen) >= _MAX_KEYS:
            _seen.pop(next(iter(_seen)))
        _seen[key] = [now, 0]
    more = f" ({suppressed} more since it was last logged)" if suppressed else ""
    level = logging.DEBUG if getattr(_local, "quiet", False) else logging.WARNING
    log.log(level, "alsa-lib %s %s%s", where, text, more)


def install_error_handler() -> bool:
    """Route alsa-lib's error messages into logging (rate-limited); idempotent. False without libasound."""
    global _handler
    lib = _libasound()
    if lib is None:
        return False
    with _lock:
        if _handler is None:
            handler = _HANDLER_T(_on_error)
            if lib.snd_lib_error_set_handler(handler) != 0:
                return False
            _handler = handler
    return True


@contextmanager
def quiet() -> Iterator[None]:
    """alsa-lib messages on this thread go to DEBUG: the thread reports what failed itself (capture's
    and playback's threads log each outage once, with alsa-lib's error string)."""
    before = getattr(_local, "quiet", False)
    _local.quiet = True
    try:
        yield
    finally:
        _local.quiet = before


def pcm_defined(name: str) -> bool:
    """Whether the ALSA configuration defines the PCM `name` (`base` or `base:ARGS`), without opening it.

    True when it cannot tell (no libasound, the configuration does not load): the caller then keeps
    retrying the device, which is today's behaviour, rather than refusing to start.
    """
    lib = _libasound()
    if lib is None:
        return True
    top = ctypes.c_void_p()
    if lib.snd_config_update_ref(ctypes.byref(top)) < 0:
        return True
    try:
        lib.snd_config_get_string.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p)]
        lib.snd_config_search_hooks.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
        for _hop in range(8):  # `pcm.a "b"` aliases are followed like snd_pcm_open does (it stops at 64)
            key = name.split(":", 1)[0]
            conf = ctypes.c_void_p()
            # As in snd_config_search_definition: a key with a dot is searched from the root.
            path = key if "." in key else f"pcm.{key}"
            if not key or lib.snd_config_search_hooks(top, path.encode(), ctypes.byref(conf)) < 0:
                return False
            alias = ctypes.c_char_p()
            if lib.snd_config_get_string(conf, ctypes.byref(alias)) < 0 or alias.value is None:
                return True
            name = alias.value.decode(errors="replace")
        return True
    finally:
        lib.snd_config_unref(top)


def pcm_names(capture: bool) -> list[str]:
    """The PCMs alsa-lib lists for the direction (its name hints), for error messages."""
    import alsaaudio

    try:
        with quiet():  # listing walks every card's definitions; with no card each one complains
            return list(alsaaudio.pcms(alsaaudio.PCM_CAPTURE if capture else alsaaudio.PCM_PLAYBACK))
    except alsaaudio.ALSAAudioError:
        return []
