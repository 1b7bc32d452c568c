"""Keeping optional packages a provider's SDK never uses out of the daemon's memory.

Some SDKs import optional packages at import time only because they are installed (google-genai pulls in
aiohttp, and google-genai and the AWS SDK bring it to the venv; httpx imports its command line, click and
pygments, when it can): megabytes of idle RSS on a Pi for code the daemon never runs (the bench's
`daemon.idle_peak_rss_mib` rows). `hidden(...)` makes those imports fail (None in `sys.modules` is the import
system's "not installed") for the duration of one import, then lets later imports find the real packages.
Only names nothing has loaded yet are hidden, so code that uses them keeps working.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator

UNUSED = ("aiohttp", "click", "pygments", "httpx2")
"""aiohttp: the SDKs' optional async HTTP transport (Nova's SDK passes its own AWS CRT one; Gemini Live
talks over websockets); click and pygments: httpx's command line (`httpx._main`, imported in a try); httpx2:
a fork of httpx that google-genai imports beside httpx when installed, for REST calls Gemini Live never makes
(httpx stays its default)."""

BOTOCORE_UNUSED = ("awscrt",)
"""botocore imports the AWS CRT (about 7 MB of RSS) when it is installed, to sign and checksum with it.
Strands imports botocore for its Bedrock text model, which the daemon never runs, and botocore works without
it (`HAS_CRT` False: its own signer). Nova Sonic's SDK needs the CRT and imports it itself when chosen."""


def lean_botocore() -> None:
    """Import botocore without the AWS CRT (`BOTOCORE_UNUSED`). Call it before anything imports strands or
    boto3: botocore decides once, when `botocore.compat` is first imported."""
    with hidden(*BOTOCORE_UNUSED):
        importlib.import_module("botocore.compat")  # botocore has no type hints


@contextlib.contextmanager
def hidden(*names: str) -> Iterator[None]:
    """Hide `names` (top-level packages) from imports made inside the block. Not thread-safe for imports of
    those names in other threads meanwhile; the daemon imports providers in one thread, and nothing else it
    runs imports these."""
    hid = [n for n in names if n not in sys.modules]
    for name in hid:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hid:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
