"""What a `Learner` knows of its data, derived from what it has seen: its tasks, the class
ids learned, their names (string labels, a table's label column, image folders) and the
feature names of the table it learned from.

`LearnedClasses` is the part of `Learner` that reads them: the experiences seen (`seen`,
their classes and tasks), the label map (`labels`) and the stream's info (`info`).
"""

from __future__ import annotations

from typing import Any

from lifelong.data.experience import Experience
from lifelong.inputs import LabelMap


class LearnedClasses:
    """The tasks, classes and names a learner has learned (a base of `Learner`)."""

    seen: list[Experience]
    labels: LabelMap
    info: dict[str, Any]

    @property
    def tasks(self) -> dict[int, tuple[int, ...]]:
        """Task id -> the classes learned in it."""
        out: dict[int, set[int]] = {}
        for e in self.seen:
            out.setdefault(e.task, set()).update(e.classes)
        return {t: tuple(sorted(cs)) for t, cs in sorted(out.items())}

    @property
    def class_ids(self) -> tuple[int, ...]:
        """The class ids learned so far (what `predict` returns)."""
        return tuple(sorted({c for e in self.seen for c in e.classes}))

    @property
    def classes(self) -> tuple[int | str, ...]:
        """The classes learned so far: their names where the data had names (string
        labels, a table's label column, image folders), else their ids."""
        ids = self.class_ids
        names = [self.class_name(c) for c in ids]
        return ids if any(n is None for n in names) else tuple(n for n in names if n)

    @property
    def feature_names(self) -> list[str] | None:
        """The feature column names of the table the model learned from (new tables are
        matched by name, `lifelong.data.columns`), or None for unnamed features."""
        names = self.info.get("feature_names")
        return [str(n) for n in names] if isinstance(names, list) else None

    @property
    def class_names(self) -> list[str] | dict[int, str] | None:
        """Names of the class ids: string labels given to `learn`, or the stream's names."""
        if self.labels.kind == "str":
            return list(self.labels.names)
        names = self.info.get("class_names")
        if isinstance(names, dict) and all(str(k).lstrip("-").isdigit() for k in names):
            return {int(k): str(v) for k, v in names.items()}
        if isinstance(names, (list, tuple)):
            return [str(v) for v in names]
        return None

    def class_name(self, c: int) -> str | None:
        """The name of class id `c`, or None when it has none."""
        names = self.class_names
        if isinstance(names, dict):
            return names.get(c)
        if isinstance(names, list) and 0 <= c < len(names):
            return names[c]
        return None
