"""The README promises what is true: its config table is `edgevoice config reference`, byte for byte,
and it starts with the two commands a new machine needs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _table(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def test_config_table_is_the_reference() -> None:
    ref = subprocess.run(
        [str(Path(sys.executable).parent / "edgevoice"), "config", "reference"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    m = re.search(r"<!-- CONFIG-REFERENCE -->(.*)<!-- /CONFIG-REFERENCE -->", README.read_text(), flags=re.S)
    assert m, "README.md has no CONFIG-REFERENCE block"
    readme_rows, ref_rows = _table(m.group(1)), _table(ref)
    assert len(ref_rows) > 30
    missing = [r for r in ref_rows if r not in readme_rows]
    extra = [r for r in readme_rows if r not in ref_rows]
    assert not missing and not extra, (
        f"README config table is stale (run scripts/readme-config): missing {missing}, not in reference {extra}"
    )
    assert readme_rows == ref_rows


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.read_text().split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:] if line.strip()]
    assert commands == ["./scripts/demo", "./scripts/test"]
