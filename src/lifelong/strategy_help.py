"""What `lifelong strategies [NAME]` prints: one line per strategy, or one strategy's whole
docstring and a table of its hyper-parameters (spec name, type, default, allowed values),
read from the constructor's signature and annotations and the class's `ranges`."""

from __future__ import annotations

import difflib
import inspect
import shutil
import sys
import typing
from typing import Any, Literal, TextIO, get_args, get_origin

from lifelong.spec import format_value, spec_name
from lifelong.strategies.base import Strategy
from lifelong.strategies.registry import registry


def summary(doc: str | None, limit: int | None = None) -> str:
    """The first paragraph of a docstring on one line, cut at `limit` characters (None:
    whole)."""
    para = " ".join((doc or "").strip().split("\n\n")[0].split())
    if limit is None or len(para) <= limit:
        return para
    return para[: max(limit - 1, 1)].rstrip() + "…"


def listing(out: TextIO) -> list[str]:
    """One line per strategy: name, scenarios, the first paragraph of its docstring. The
    paragraph is cut to the terminal's width only when `out` is a terminal."""
    reg = registry()
    width = max(len(n) for n in reg)
    cut = shutil.get_terminal_size().columns if out.isatty() else None
    lines = []
    for name, cls in sorted(reg.items()):
        head = f"{name:<{width}}  [{','.join(cls.scenarios)}]  "
        limit = None if cut is None else max(cut - len(head), 20)
        lines.append(head + summary(cls.__doc__, limit))
    return lines


def find(name: str) -> type[Strategy]:
    """The registered strategy `name`; a `ValueError` with the closest names otherwise."""
    reg = registry()
    if name in reg:
        return reg[name]
    close = difflib.get_close_matches(name, list(reg), n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise ValueError(
        f"unknown strategy {name!r}{hint}; `lifelong strategies` lists them: "
        f"{', '.join(sorted(reg))}"
    )


def _type_text(annotation: Any) -> str:
    """`int`, `float`, `bool`, `choice`, `int or none`, `tuple of int`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "choice"
    if origin is tuple:
        return f"tuple of {_type_text(args[0])}" if args else "tuple"
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return " or ".join([*(_type_text(a) for a in rest), "none"])
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _allowed(cls: type[Strategy], arg: str, annotation: Any) -> str:
    bounds = cls.ranges.get(arg)
    if bounds is not None:
        return bounds.describe()
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(annotation))
    if annotation is bool:
        return "true or false"
    return "any"


def parameters(cls: type[Strategy]) -> list[tuple[str, str, str, str]]:
    """`(spec name, type, default, allowed values)` of each hyper-parameter of `cls`."""
    sig = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except NameError:
        hints = {}
    rows = []
    for arg in cls.param_names():
        default = sig.parameters[arg].default
        shown = "(required)" if default is inspect.Parameter.empty else format_value(default)
        annotation = hints.get(arg, Any)
        rows.append((spec_name(arg), _type_text(annotation), shown, _allowed(cls, arg, annotation)))
    return rows


def describe(name: str) -> str:
    """The help of strategy `name`: scenarios, its whole docstring, its hyper-parameters."""
    cls = find(name)
    doc = inspect.cleandoc(cls.__doc__ or "(no description)")
    lines = [f"{name}  [scenarios: {', '.join(cls.scenarios)}]", "", doc, ""]
    rows = parameters(cls)
    if not rows:
        lines.append("hyper-parameters: none")
        return "\n".join(lines)
    head = ("parameter", "type", "default", "allowed")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    every = ",".join(f"{r[0]}={r[2]}" for r in rows if r[2] != "(required)")
    lines.append(f"hyper-parameters (the defaults as a spec: {name}({every})):")
    for row in [head, *rows]:
        lines.append("  " + "  ".join(f"{v:<{w}}" for v, w in zip(row, widths)) + "  " + row[3])
    return "\n".join(lines)


def main(name: str | None, out: TextIO | None = None) -> int:
    """`lifelong strategies [NAME]`."""
    out = out or sys.stdout
    text = "\n".join(listing(out)) if name is None else describe(name)
    print(text, file=out)
    return 0
