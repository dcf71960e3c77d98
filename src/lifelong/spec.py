"""The spec language: `name` or `name(key=value, ...)`, joined by `+` for a hybrid.

A leaf module (standard library only): the strategy registry, the model builder and the
configuration code all parse and print specs with these functions. `lambda` in a spec is
`lambda_` in Python (`py_name` / `spec_name`).
"""

from __future__ import annotations

import ast
from typing import Any


def split_top_level(text: str, sep: str) -> list[str]:
    """Split `text` at `sep` characters that are not inside parentheses or brackets."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"malformed spec {text!r}: unbalanced ')'")
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ValueError(f"malformed spec {text!r}: unclosed '('")
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_value(text: str) -> Any:
    """A spec value: a Python literal (number, tuple, quoted string) or a bare word."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_one(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse `name(key=value, ...)` into `(name, {key: value})` (no validation of names)."""
    spec = spec.strip()
    if not spec:
        raise ValueError("malformed spec: empty name")
    if "(" not in spec:
        if not _is_name(spec):
            raise ValueError(f"malformed spec {spec!r}: expected name or name(key=value, ...)")
        return spec, {}
    name, _, rest = spec.partition("(")
    name = name.strip()
    if not rest.endswith(")") or not _is_name(name):
        raise ValueError(f"malformed spec {spec!r}: expected name(key=value, ...)")
    params: dict[str, Any] = {}
    body = rest[:-1].strip()
    for item in split_top_level(body, ",") if body else []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not _is_name(key) or not value.strip():
            raise ValueError(f"malformed spec {spec!r}: {item!r} is not key=value")
        if key in params:
            raise ValueError(f"malformed spec {spec!r}: {key!r} given twice")
        params[key] = parse_value(value.strip())
    return name, params


def _is_name(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "-_" for c in text) and not text[0].isdigit()


def py_name(key: str) -> str:
    return "lambda_" if key == "lambda" else key


def spec_name(arg: str) -> str:
    return "lambda" if arg == "lambda_" else arg


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return (
            "(" + ",".join(format_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
        )
    return str(value)
