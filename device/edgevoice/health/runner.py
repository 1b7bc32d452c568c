"""Runs checks with a timeout each, so doctor answers within seconds however broken the device is.

Checks are grouped in lanes: the lanes run side by side (the network checks wait on their own timeouts at
once, not one after another), the steps of a lane one after another (the capture device is opened by one
check at a time; the sync backlog needs the S3 check's answer). Each step runs in a daemon thread of its
own: one that outlives its timeout is reported as a failure and abandoned, still blocked wherever it was
(a name lookup, a device), and the process exits without waiting for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from . import Check, fail

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One check to run: `run` gets the checks its lane finished before it, by name."""

    name: str
    timeout_s: float
    run: Callable[[Mapping[str, Check]], Check]


def _bounded(step: Step, done: Mapping[str, Check]) -> Check:
    result: list[Check] = []

    def target() -> None:
        try:
            result.append(step.run(done))
        except Exception as e:  # a bug in a check: one failed row (traceback logged), the others still run
            log.error("check %s raised", step.name, exc_info=True)
            result.append(fail(step.name, f"the check itself failed ({type(e).__name__}: {e})"))

    thread = threading.Thread(target=target, name=f"doctor:{step.name}", daemon=True)
    thread.start()
    thread.join(step.timeout_s)
    if not result:
        return fail(step.name, f"no answer within {step.timeout_s:g} s")
    return result[0]


def run(lanes: Sequence[Sequence[Step]], order: Sequence[str] | None = None) -> Iterator[Check]:
    """Every step's Check, yielded in `order` (default: lane by lane) as soon as it and those before it are in."""
    results: dict[str, Check] = {}
    ready = threading.Condition()

    def lane(steps: Sequence[Step]) -> None:
        done: dict[str, Check] = {}
        for step in steps:
            check = _bounded(step, dict(done))
            done[step.name] = check
            with ready:
                results[step.name] = check
                ready.notify_all()

    names = [s.name for steps in lanes for s in steps]
    order = names if order is None else order
    if sorted(order) != sorted(names):
        raise ValueError(f"order {list(order)} does not name each step once: {names}")
    for steps in lanes:
        if steps:
            threading.Thread(target=lane, args=(steps,), name=f"doctor-lane:{steps[0].name}", daemon=True).start()
    for name in order:
        with ready:
            ready.wait_for(lambda: name in results)  # noqa: B023 - used at once, inside this iteration
        yield results[name]
