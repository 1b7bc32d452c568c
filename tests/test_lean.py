"""What the daemon keeps out of its memory (`edgevoice/models/lean.py`), and that what it hides still works.

Each check runs in a fresh interpreter: what is imported, and with what hidden, is per process. The memory
itself is the bench's (`daemon.idle_peak_rss_mib` rows); these pin the mechanism, so a change that loads
the AWS CRT or httpx2 again fails here rather than only as a bench ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _run(code: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_run_command_imports_botocore_without_the_crt(tmp_path: Path) -> None:
    # `edgevoice run` with a config that does not exist: it stops with exit 2 after its first step, and
    # strands (botocore with it) imported afterwards in that process finds botocore already imported lean.
    got = _run(
        "import json, sys\n"
        "from edgevoice import cli\n"
        f"rc = cli.main(['run', '--config', {str(tmp_path / 'missing.toml')!r}])\n"
        "import strands.bidi, botocore.compat\n"
        "crt_before = '_awscrt' in sys.modules\n"
        "import awscrt.http\n"  # hidden only while botocore loaded: Nova Sonic's SDK still imports it
        "print(json.dumps({'rc': rc, 'crt': crt_before, 'has_crt': botocore.compat.HAS_CRT}))\n"
    )
    assert got == {"rc": 2, "crt": False, "has_crt": False}


def test_without_the_call_botocore_loads_the_crt() -> None:
    # The control: the check above can fail (the CRT is installed, and botocore loads it when not hidden).
    got = _run("import json, sys\nimport strands.bidi\nprint(json.dumps({'crt': '_awscrt' in sys.modules}))\n")
    assert got == {"crt": True}


def test_gemini_imports_without_aiohttp_and_httpx2_and_they_load_later() -> None:
    got = _run(
        "import json, sys\n"
        "from edgevoice.models.lean import UNUSED, hidden\n"
        "with hidden(*UNUSED):\n"
        "    import edgevoice.models.gemini_live\n"
        "from google.genai import _api_client\n"
        "loaded = sorted(n for n in ('aiohttp', 'httpx2', 'click', 'pygments') if n in sys.modules)\n"
        "import httpx2\n"
        "print(json.dumps({'loaded': loaded, 'genai_httpx2': _api_client.httpx2 is None,"
        " 'later': httpx2.__name__}))\n"
    )
    assert got == {"loaded": [], "genai_httpx2": True, "later": "httpx2"}


def test_every_gemini_model_shares_one_tls_context_for_its_http_clients_and_its_websocket() -> None:
    """google-genai loads the CA bundle twice per client it builds, and the daemon builds one per reconnect."""
    got = _run(
        "import json\n"
        "from edgevoice.models.gemini_live import GeminiLiveModel\n"
        "ctxs = []\n"
        "for _ in range(2):\n"
        "    m = GeminiLiveModel(model_id='m', client_args={'api_key': 'k'})\n"
        "    api = m._client._api_client\n"
        "    ctxs += [api._websocket_ssl_ctx['ssl'], api._httpx_client._transport._pool._ssl_context]\n"
        "print(json.dumps({'distinct': len({id(c) for c in ctxs}), 'seen': len(ctxs)}))\n"
    )
    assert got == {"distinct": 1, "seen": 4}
