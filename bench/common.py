"""Row type and goal checking shared by the bench modules."""

from __future__ import annotations

import json
import operator
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

_OPS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "<": operator.lt, ">": operator.gt}
_GOAL = re.compile(r"^(ratio|value)\s*(<=|>=|==|<|>)\s*([0-9.eE+-]+)$")


@dataclass(frozen=True)
class Row:
    """One measured figure. `goal` is `ratio <= 1.5`, `value >= 2000`, `value == 0` or empty."""

    name: str
    value: float
    unit: str
    anchor: float | None = None
    goal: str = ""

    @property
    def ratio(self) -> float | None:
        if self.anchor is None or self.anchor == 0:
            return None
        return self.value / self.anchor

    @property
    def ok(self) -> bool | None:
        if not self.goal:
            return None
        m = _GOAL.match(self.goal)
        if m is None:
            raise ValueError(f"bad goal {self.goal!r} in row {self.name}")
        what, op, bound = m.groups()
        x = self.ratio if what == "ratio" else self.value
        return None if x is None else bool(_OPS[op](x, float(bound)))

    def as_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "value": round(self.value, 6),
                "unit": self.unit,
                "anchor": None if self.anchor is None else round(self.anchor, 6),
                "ratio": None if self.ratio is None else round(self.ratio, 4),
                "goal": self.goal,
                "ok": self.ok,
            }
        )


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def best_cpu(fn: Callable[[], object], repeat: int) -> float:
    """Least process CPU time (s) of `repeat` runs of `fn` (the others were disturbed by something else)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


CHILD_PRELUDE = r"""
import json, sys, time
def hwm_kb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
"""
"""What every child starts with: `json`, `sys`, `time`, and `hwm_kb()`, the process's peak RSS (VmHWM) in kB."""


def child_json(code: str, *args: str, timeout: float | None = None) -> dict[str, float]:
    """Run CHILD_PRELUDE and `code` in a fresh interpreter with `args`; the JSON object its last line of output
    prints."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD_PRELUDE + code, *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))
