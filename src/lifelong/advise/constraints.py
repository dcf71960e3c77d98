"""What the user's situation allows: the `Constraints` of `lifelong advise`.

They come from flags, else a YAML file, else a plain `input()` prompt when standard input
is a terminal, else a default: a pipe or a script is never blocked. Standard library only
at import (`lifelong.data.benchmarks` is imported when a benchmark's scenario is inferred).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KeepData = str | int  # "none", "all" or a number of samples
PRIORITIES = ("retain", "adapt", "balanced")
SCENARIOS = ("class", "domain", "task")


@dataclass(frozen=True)
class Constraints:
    """What may be done. `keep_data`: "none", "all" or how many past samples may be stored;
    `retention_days`: how long they may be kept (None: no limit); `update_every`: how often
    new data arrives ("1d", "12h", "7d"); `budget_seconds`: compute allowed per update."""

    keep_data: KeepData = "all"
    retention_days: float | None = None
    generated_ok: bool = False
    task_ids_at_prediction: bool = False
    backbone: str | None = None
    priority: str = "balanced"
    min_accuracy: float | None = None
    budget_seconds: float | None = None
    update_every: str | None = None
    scenario: str = "class"

    @property
    def memory_cap(self) -> int | None:
        """How many real past samples may be stored: 0, a number, or None (no limit)."""
        if self.keep_data == "none" or self.retention_days == 0:
            return 0
        return None if self.keep_data == "all" else int(self.keep_data)

    @property
    def update_days(self) -> float | None:
        return None if self.update_every is None else parse_period(self.update_every)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_keep(text: object) -> KeepData:
    """`none`, `all` or a number of samples (0 is none)."""
    s = str(text).strip().lower()
    if s in ("none", "no", "0"):
        return "none"
    if s in ("all", "yes", "any"):
        return "all"
    s = s.removesuffix("samples").strip()
    if s.isdigit():
        return int(s)
    raise ValueError(f"keep_data must be none, all or a number of samples, got {text!r}")


def parse_days(text: object) -> float | None:
    """A number of days (`inf`, `none`, `unlimited`: no limit)."""
    s = str(text).strip().lower().removesuffix("days").removesuffix("d").strip()
    if s in ("inf", "none", "unlimited", "forever", ""):
        return None
    v = float(s)
    if v < 0 or math.isnan(v):
        raise ValueError(f"retention must be >= 0 days, got {text!r}")
    return None if math.isinf(v) else v


def parse_bool(text: object) -> bool:
    if isinstance(text, bool):
        return text
    s = str(text).strip().lower()
    if s in ("yes", "y", "true", "1"):
        return True
    if s in ("no", "n", "false", "0"):
        return False
    raise ValueError(f"expected yes or no, got {text!r}")


def parse_period(text: str) -> float:
    """`30m`, `12h`, `1d`, `2w`, `1y` or a bare number of days -> days."""
    s = str(text).strip().lower()
    units = {"m": 1 / 1440, "h": 1 / 24, "d": 1.0, "w": 7.0, "y": 365.0}
    factor = units.get(s[-1:], None)
    number = s[:-1] if factor is not None else s
    try:
        v = float(number) * (factor or 1.0)
    except ValueError:
        raise ValueError(f"update_every reads like 1d, 12h, 7d or 1y, got {text!r}") from None
    if v <= 0:
        raise ValueError(f"update_every must be positive, got {text!r}")
    return v


def _choice(options: tuple[str, ...]) -> Callable[[object], str]:
    def parse(text: object) -> str:
        s = str(text).strip().lower()
        if s not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")
        return s

    return parse


def _optional_float(text: object) -> float | None:
    s = str(text).strip().lower()
    return None if s in ("", "none") else float(s)


def _optional_str(text: object) -> str | None:
    s = str(text).strip()
    return None if s.lower() in ("", "none", "no") else s


#: field -> (question, parser). The order is the order of the prompts.
FIELDS: dict[str, tuple[str, Callable[[object], Any]]] = {
    "keep_data": ("May past data be kept? none, all or a number of samples", parse_keep),
    "retention_days": ("For how many days may it be kept? (inf: no limit)", parse_days),
    "generated_ok": ("May generated (synthetic) samples be stored instead? yes/no", parse_bool),
    "task_ids_at_prediction": ("Is the task id known at prediction time? yes/no", parse_bool),
    "backbone": ("A pretrained backbone (model spec), or none", _optional_str),
    "priority": ("What matters more? retain, adapt or balanced", _choice(PRIORITIES)),
    "min_accuracy": ("Minimum acceptable accuracy (0-1), or none", _optional_float),
    "budget_seconds": ("Compute allowed per update, in seconds, or none", _optional_float),
    "update_every": ("How often does new data arrive? e.g. 1d, 7d, 1y, or none", _optional_str),
    "scenario": ("Scenario: class (new classes), domain (drift) or task", _choice(SCENARIOS)),
}


def ask(field: str, default: Any, input_fn: Callable[[str], str] = input) -> Any:
    """Ask for one constraint until the answer parses (empty: the default)."""
    question, parse = FIELDS[field]
    for _ in range(3):
        answer = input_fn(f"{question} [{default}]: ").strip()
        if not answer:
            return default
        try:
            return parse(answer)
        except ValueError as e:
            print(f"  {e}", file=sys.stderr)
    return default


def resolve(
    given: dict[str, Any],
    from_file: dict[str, Any] | None = None,
    interactive: bool | None = None,
    input_fn: Callable[[str], str] = input,
) -> Constraints:
    """Constraints from `given` (flags; None: not given), else `from_file`, else a prompt
    when `interactive` (default: standard input is a terminal), else the default."""
    if interactive is None:
        interactive = sys.stdin.isatty()
    unknown = set(from_file or {}) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown constraint(s) {sorted(unknown)}; expected {list(FIELDS)}")
    defaults = Constraints()
    values: dict[str, Any] = {}
    for name, (_, parse) in FIELDS.items():
        if given.get(name) is not None:
            values[name] = parse(given[name])
        elif from_file and name in from_file:
            values[name] = parse(from_file[name])
        elif interactive and name != "scenario":
            values[name] = ask(name, getattr(defaults, name), input_fn)
    if values.get("keep_data") == "none" and "retention_days" not in values:
        values["retention_days"] = 0.0
    return Constraints(**values)


def read_yaml(path: str) -> dict[str, Any]:
    """A YAML mapping of constraints (keys as the fields, dashes allowed)."""
    import yaml  # type: ignore[import-untyped,unused-ignore]

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of constraints")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def infer_scenario(
    data: dict[str, Any] | None, benchmark: str | None, task_ids: bool
) -> tuple[str, str]:
    """The scenario and why: from the data's options (a task or domain column) or the
    benchmark's scenarios (task when task ids are known at prediction and it has one)."""
    if data is not None:
        if data.get("task_column"):
            return "task", f"the data has a task column ({data['task_column']})"
        if data.get("domain_column"):
            return "domain", f"the data has a domain column ({data['domain_column']})"
        return "class", "the data has no task or domain column: new classes over time"
    if benchmark is not None:
        from lifelong.data.benchmarks import BENCHMARKS

        if benchmark not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {benchmark!r}")
        scenarios = BENCHMARKS[benchmark].scenarios
        if task_ids and "task" in scenarios:
            return "task", f"{benchmark} defines the task scenario and task ids are known"
        return scenarios[0], f"{benchmark}'s first scenario ({', '.join(scenarios)})"
    return "class", "no data given: the class scenario (new classes over time)"
