"""Paths in an experiment file: its relative input paths are read against the file's
folder (`lifelong compare data/d2.yaml` naming `sales.csv` means `data/sales.csv`), and a
missing data path is reported with the absolute path looked for. `out` (the command's
output) stays relative to the current folder, like its default `runs/<file name>`."""

from __future__ import annotations

import os
from typing import Any

#: keys (and keys of `data:`) naming inputs, read against the experiment file's folder
PATH_KEYS = ("data_dir",)
DATA_PATH_KEYS = ("path", "cache_dir")


def against_file(values: dict[str, Any], path: str | os.PathLike[str]) -> dict[str, Any]:
    """`values` read from file `path`, their relative input paths joined to its folder."""
    base = os.path.dirname(os.fspath(path))

    def resolve(p: Any) -> Any:
        if not isinstance(p, str) or not base or os.path.isabs(os.path.expanduser(p)):
            return p
        return os.path.normpath(os.path.join(base, p))

    out = {k: resolve(v) if k in PATH_KEYS else v for k, v in values.items()}
    if isinstance(out.get("data"), dict):
        out["data"] = {k: resolve(v) if k in DATA_PATH_KEYS else v for k, v in out["data"].items()}
    return out


def missing_data(where: Any, source: str) -> str | None:
    """Why data path `where` (from `source`: a file, or the command line) is not there,
    naming the absolute path looked for; None when it exists."""
    if not isinstance(where, str) or os.path.exists(os.path.expanduser(where)):
        return None
    looked = os.path.abspath(os.path.expanduser(where))
    if source.startswith(("command line", "--")):
        return f"{source}: {where!r} does not exist; looked for {looked}"
    base = os.path.dirname(source) or "."
    given = os.path.relpath(where, base)  # as the file has it
    hint = ""
    if not os.path.isabs(where) and os.path.exists(given):  # written for the current folder
        hint = f"; for the current folder's {given!r} write {os.path.relpath(given, base)!r}"
    return (
        f"{source}: data: path {where!r} does not exist; looked for {looked} "
        f"(relative paths in an experiment file are read against the file's folder){hint}"
    )
