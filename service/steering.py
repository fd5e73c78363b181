"""Steering rules: structured conditions on analyzer outputs → one command per step.

A rule compares one score of one analyzer (or its event count, ``n_events``)
with a threshold.  Rules are data, never code: the config names an analyzer,
a score, an operator from a fixed table and a number — nothing is evaluated.
Per analyzed step the first rule that fires (in config order) decides the
command; when none fires the step is answered with ``continue``.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
from typing import Any, Callable, Mapping

from intransit.analyzers.base import StepResult

log = logging.getLogger(__name__)

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclasses.dataclass
class Rule:
    name: str
    analyzer: str
    score: str
    op: str
    threshold: float
    command: str
    args: dict[str, Any] = dataclasses.field(default_factory=dict)
    for_steps: int = 1
    once: bool = True


@dataclasses.dataclass
class Decision:
    command: str
    args: dict[str, Any]
    rule: str


CONTINUE = Decision("continue", {}, "")


class RuleEngine:
    """Evaluates rules step by step, with debouncing (``for_steps``) and ``once``."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._streak = {r.name: 0 for r in rules}
        self._fired: set[str] = set()

    def evaluate(self, results: Mapping[str, StepResult | None]) -> Decision:
        decision = CONTINUE
        for rule in self.rules:
            result = results.get(rule.analyzer)
            value = _value(result, rule.score)
            holds = value is not None and OPERATORS[rule.op](value, rule.threshold)
            self._streak[rule.name] = self._streak[rule.name] + 1 if holds else 0
            if decision is not CONTINUE or self._streak[rule.name] < rule.for_steps:
                continue
            if rule.once and rule.name in self._fired:
                continue
            self._fired.add(rule.name)
            decision = Decision(rule.command, dict(rule.args), rule.name)
        return decision

    def state_dict(self) -> dict[str, Any]:
        return {"streak": dict(self._streak), "fired": sorted(self._fired)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._streak.update(state.get("streak", {}))
        self._fired = set(state.get("fired", []))


def _value(result: StepResult | None, score: str) -> float | None:
    if result is None:
        return None  # a failed analyzer never fires a rule
    if score == "n_events":
        return float(len(result.events))
    value = result.scores.get(score)
    return None if value is None else float(value)
