"""The guide's rules as pure functions: constraints + catalogue + evidence -> shortlist.

`catalogue` maps each strategy name to its `StrategyInfo` (scenarios, default
hyper-parameters); `evidence` is a summary from `lifelong.advise.evidence` (or None).
Nothing here imports torch or reads files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lifelong.advise.constraints import Constraints
from lifelong.advise.evidence import cite

REGULARIZATION = ("ewc", "si", "mas", "lwf", "online-ewc")
BASELINES = ("naive", "cumulative", "joint")
MAX_METHODS = 5


@dataclass(frozen=True)
class StrategyInfo:
    """What the rules need to know of a strategy."""

    scenarios: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    """One shortlisted method: its spec, family, the guide's reason and the evidence."""

    spec: str
    family: str
    reason: str
    evidence: str


@dataclass(frozen=True)
class Advice:
    entries: list[Entry]
    ruled_out: list[tuple[str, str]]  # (family, why)


def family(name: str, info: StrategyInfo) -> str:
    """A strategy's family, from what it declares."""
    if name in BASELINES:
        return "baseline"
    if "mem_size" in info.params:
        return "memory"
    if name == "generative-replay":
        return "generative"
    if name in REGULARIZATION:
        return "regularization"
    if name == "adapter":
        return "adapter"
    if info.scenarios == ("task",):
        return "architectural"
    return "other"


def _score(name: str, evidence: dict[str, Any] | None, priority: str) -> float:
    """Higher is better: accuracy (balanced), accuracy minus forgetting (retain), accuracy
    per training second (adapt). Unmeasured strategies score lowest."""
    s = (evidence or {}).get("strategies", {}).get(name)
    if not s or s.get("final_accuracy") is None:
        return -1.0
    acc = float(s["final_accuracy"])
    if priority == "retain":
        return acc - float(s["forgetting"])
    if priority == "adapt":
        return acc / (1.0 + float(s["train_seconds"]))
    return acc


def _ranked(names: list[str], evidence: dict[str, Any] | None, priority: str) -> list[str]:
    return sorted(names, key=lambda n: (-_score(n, evidence, priority), n))


def memory_spec(name: str, info: StrategyInfo, cap: int | None) -> str:
    """`name(mem_size=N)` with N the allowed number of samples (or the default)."""
    size = int(info.params["mem_size"]) if cap is None else cap
    return f"{name}(mem_size={size})"


def _serving(catalogue: dict[str, StrategyInfo], scenario: str, fam: str) -> list[str]:
    return [n for n, i in catalogue.items() if scenario in i.scenarios and family(n, i) == fam]


def _memory(c: Constraints, cat: dict[str, StrategyInfo], ev: Any, out: list[Entry]) -> None:
    cap = c.memory_cap
    best = _ranked(_serving(cat, c.scenario, "memory"), ev, c.priority)[:2]
    limit = "all past data" if cap is None else f"{cap} samples"
    for name in best:
        out.append(
            Entry(
                memory_spec(name, cat[name], cap),
                "memory",
                f"past data may be kept ({limit}): a memory-based method, capped at what is allowed",
                cite(ev, name),
            )
        )


def shortlist(
    c: Constraints, catalogue: dict[str, StrategyInfo], evidence: dict[str, Any] | None
) -> Advice:
    """Naive first as the baseline, then up to `MAX_METHODS` methods or hybrids that the
    constraints allow, best-evidenced first within each rule; plus the families ruled out."""
    out = [Entry("naive", "baseline", "start with a naive baseline", cite(evidence, "naive"))]
    ruled: list[tuple[str, str]] = []
    cap = c.memory_cap
    if cap != 0:
        _memory(c, catalogue, evidence, out)
    else:
        why = "retention is 0 days" if c.retention_days == 0 else "no past data may be kept"
        ruled.append(("memory", f"no memory: {why}"))
        ruled.append(("baseline", f"no cumulative/joint retraining: {why}"))
    if cap is not None and cap != 0:
        ruled.append(
            ("baseline", f"no cumulative/joint retraining: only {cap} samples may be kept")
        )
    if (
        cap == 0
        and c.generated_ok
        and "generative-replay" in _serving(catalogue, c.scenario, "generative")
    ):
        out.append(
            Entry(
                "generative-replay",
                "generative",
                "real samples cannot be kept but generated ones can fill a memory",
                cite(evidence, "generative-replay"),
            )
        )
    elif cap == 0:
        why = (
            "generated samples are not allowed"
            if not c.generated_ok
            else f"it does not serve the {c.scenario} scenario"
        )
        ruled.append(("generative", f"no generative replay: {why}"))
    regs = _ranked(_serving(catalogue, c.scenario, "regularization"), evidence, c.priority)
    for name in regs[: 1 if cap != 0 else 2]:
        out.append(
            Entry(
                name,
                "regularization",
                "a simple regularization method as a quick baseline (stores no data)",
                cite(evidence, name),
            )
        )
    arch = _serving(catalogue, c.scenario, "architectural")
    if c.task_ids_at_prediction and c.scenario == "task" and arch:
        for name in _ranked(arch, evidence, c.priority)[:1]:
            out.append(
                Entry(
                    name,
                    "architectural",
                    "task ids are known at prediction time: an architectural method keeps each task's parameters (stores no data)",
                    cite(evidence, name),
                )
            )
    else:
        why = (
            "task ids are not known at prediction time"
            if not c.task_ids_at_prediction
            else f"the scenario is {c.scenario}, they need the task scenario"
        )
        ruled.append(("architectural", f"no task-only architectural methods (pnn, packnet): {why}"))
    _backbone_and_hybrids(c, catalogue, evidence, out, ruled)
    return Advice(out[: 1 + MAX_METHODS], ruled)


def _backbone_and_hybrids(
    c: Constraints,
    cat: dict[str, StrategyInfo],
    ev: dict[str, Any] | None,
    out: list[Entry],
    ruled: list[tuple[str, str]],
) -> None:
    if c.backbone and "adapter" in cat and c.scenario in cat["adapter"].scenarios:
        out.insert(
            1,
            Entry(
                "adapter",
                "adapter",
                f"a pretrained backbone ({c.backbone}): freeze it and tune a few added parameters",
                cite(ev, "adapter"),
            ),
        )
    elif not c.backbone:
        ruled.append(("adapter", "no adapter: no pretrained backbone given"))
    mem = [e for e in out if e.family == "memory"]
    regs = [e for e in out if e.family == "regularization"]
    if mem and regs:
        spec = f"{mem[0].spec}+{regs[0].spec}"
        out.append(
            Entry(
                spec,
                "hybrid",
                "combine families: memory plus regularization",
                f"parts: {mem[0].spec.split('(')[0]} and {regs[0].spec} (the hybrid itself is not measured)",
            )
        )


def parts(spec: str) -> list[tuple[str, dict[str, str]]]:
    """`replay(mem_size=200)+lwf` -> [("replay", {"mem_size": "200"}), ("lwf", {})]
    (for checks; only flat `key=value` parameters)."""
    out = []
    for part in spec.split("+"):
        name, _, rest = part.partition("(")
        params = dict(kv.split("=", 1) for kv in rest.rstrip(")").split(",") if "=" in kv)
        out.append((name.strip(), {k.strip(): v.strip() for k, v in params.items()}))
    return out


def violations(spec: str, c: Constraints, catalogue: dict[str, StrategyInfo]) -> list[str]:
    """What in `spec` the constraints forbid (empty: it obeys them all)."""
    bad = []
    cap = c.memory_cap
    for name, params in parts(spec):
        info = catalogue[name]
        fam = family(name, info)
        if c.scenario not in info.scenarios:
            bad.append(f"{name} does not serve {c.scenario}")
        if fam == "memory" and cap == 0:
            bad.append(f"{name} stores real samples")
        if (
            fam == "memory"
            and cap is not None
            and int(params.get("mem_size", info.params["mem_size"])) > cap
        ):
            bad.append(f"{name} stores more than {cap} samples")
        if name in ("cumulative", "joint") and cap is not None:
            bad.append(f"{name} keeps all past data")
        if fam == "generative" and not c.generated_ok:
            bad.append(f"{name} stores generated samples")
        if fam == "architectural" and not (c.task_ids_at_prediction and c.scenario == "task"):
            bad.append(f"{name} needs task ids at prediction")
    return bad
