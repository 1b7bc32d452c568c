"""Where the cloud clients' TLS trust comes from, read so that it costs no memory until a handshake needs it.

A CA bundle file is parsed whole into every TLS context made from it: about 1.1 MB for the system's in the
AWS CRT, and for certifi's in each Python SSL context google-genai makes, on a device that trusts one
endpoint. OpenSSL's hashed directory (`/etc/ssl/certs`, which Debian's ca-certificates keeps, with its
security updates) is read lazily instead: the one root a handshake needs, then. So: `SSL_CERT_FILE` and
`SSL_CERT_DIR` when set (a private CA; how the tests trust their fakes), else the system directory when it
holds hashed links, else the client's own default (certifi's bundle for google-genai, the CRT's for Nova).
"""

from __future__ import annotations

import functools
import os
import re

SYSTEM_CA_DIR = "/etc/ssl/certs"

_HASHED = re.compile(r"[0-9a-f]{8}\.[0-9]+")


def trust_store() -> tuple[str | None, str | None] | None:
    """(cafile, capath) for a client's TLS context, or None: the client's own default."""
    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    if cafile or capath:
        return cafile, capath
    if hashed_dir(SYSTEM_CA_DIR):
        return None, SYSTEM_CA_DIR
    return None


@functools.cache
def hashed_dir(path: str) -> bool:
    """Whether `path` holds OpenSSL's `<subject hash>.<n>` links, which a lazy lookup needs."""
    try:
        return any(_HASHED.fullmatch(name) for name in os.listdir(path))
    except OSError:
        return False
