"""Row type and goal checking shared by the bench modules."""

from __future__ import annotations

import json
import operator
import re
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
