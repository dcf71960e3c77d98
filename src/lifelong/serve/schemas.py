"""The request and response bodies of `lifelong serve` (pydantic models, so the served
OpenAPI schema documents them and a malformed body is refused with a 422 naming the
field). Numbers must be finite; ids fit the database's 32-bit integers; text is valid
UTF-8 without NUL characters (PostgreSQL refuses those)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from lifelong.data.text import encode_texts

MAX_ROWS = 10_000
MAX_INT = 2**31 - 1

Finite = Annotated[float, Field(allow_inf_nan=False)]
Row = Annotated[list[Finite], Field(min_length=1)]
Rows = Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS)]
ClassId = Annotated[int, Field(ge=0, le=MAX_INT)]


def clean_text(s: str) -> str:
    """`s` if it is storable text: a 4xx-worthy `ValueError` otherwise."""
    if "\x00" in s:
        raise ValueError("text may not contain NUL characters")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid UTF-8 (a lone surrogate)") from None
    return s


Subject = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(clean_text)]
Text = Annotated[str, Field(max_length=100_000), AfterValidator(clean_text)]
Texts = Annotated[list[Text], Field(min_length=1, max_length=MAX_ROWS)]


def _inputs(
    rows: list[Any] | None, texts: list[str] | None, required: bool = True
) -> tuple[int, str]:
    """How many inputs there are and their field: `rows` or `texts` (a text model's
    documents), not both."""
    if rows is not None and texts is not None:
        raise ValueError("give 'rows' (features) or 'texts' (a text model's documents), not both")
    if required and rows is None and texts is None:
        raise ValueError("give 'rows' (features) or 'texts' (a text model's documents)")
    if texts is not None:
        return len(texts), "texts"
    return len(rows or []), "rows"


class Inputs(BaseModel):
    """A body whose inputs are feature `rows` or, for a text model (`text:...`), `texts`
    (encoded as the model's training read them: `lifelong.data.text.encode_texts`)."""

    def features(self) -> Any:
        """The inputs as float32 rows (texts as code points), or None when there are none."""
        rows, texts = getattr(self, "rows", None), getattr(self, "texts", None)
        if texts is not None:
            return encode_texts(texts, column="texts")
        return None if rows is None else np.asarray(rows, dtype=np.float32)


Subjects = Subject | Annotated[list[Subject | None], Field(max_length=MAX_ROWS)] | None
Tasks = ClassId | Annotated[list[ClassId], Field(max_length=MAX_ROWS)] | None
User = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")]
Users = Annotated[list[User], Field(min_length=1, max_length=MAX_ROWS)]


def _check_users(user: str | None, users: list[str] | None, inputs: tuple[int, str]) -> None:
    """`user` or `users` (one id per row), not both."""
    if user is not None and users is not None:
        raise ValueError("give 'user' (one for every row) or 'users' (one per row), not both")
    n, field = inputs
    if users is not None and len(users) != n:
        raise ValueError(f"'users' has {len(users)} ids but '{field}' has {n} {field}")


class Strict(Inputs):
    model_config = ConfigDict(extra="forbid")


class PredictIn(Strict):
    rows: Rows | None = Field(
        None, description="feature rows (flattened to the model's input shape)"
    )
    texts: Texts | None = Field(None, description="documents, instead of rows (a text model)")
    task: Tasks = Field(None, description="task id (one, or one per row), task scenario only")
    subject: Subjects = Field(None, description="subject id (one, or one per row)")
    record: bool = Field(True, description="store the inputs (for drift and late labels)")
    user: User | None = Field(
        None,
        description="predict with this user's personal head (production's answer for a user "
        "without one; no probabilities); models with a pretrained backbone only",
    )
    users: Users | None = Field(
        None, description="one user id per row: row i by the head of users[i] (like 'user')"
    )

    @model_validator(mode="after")
    def _users(self) -> PredictIn:
        _check_users(self.user, self.users, _inputs(self.rows, self.texts))
        return self


class PredictOut(BaseModel):
    version: str = Field(description="the model version that answered")
    classes: list[int]
    probabilities: list[list[float]] | None = Field(
        description="per row, one probability per class id (null when the strategy "
        "replaces prediction, e.g. iCaRL)"
    )
    ids: list[int] | None = Field(description="prediction ids, for labels sent later")


class FeedbackIn(Strict):
    """Either `ids` + `labels` (labels of earlier predictions) or `rows` + `labels` (new
    labelled samples, with optional subject and task ids, or a `user` whose personal head
    they train at once)."""

    labels: Annotated[list[ClassId], Field(min_length=1, max_length=MAX_ROWS)]
    ids: (
        Annotated[list[Annotated[int, Field(ge=1, le=MAX_INT)]], Field(max_length=MAX_ROWS)] | None
    ) = None
    rows: Rows | None = None
    texts: Texts | None = Field(None, description="documents, instead of rows (a text model)")
    subject: Subjects = None
    task: Tasks = None
    user: User | None = Field(
        None,
        description="new samples of this user (stored with the user as subject), which "
        "personalise the user's head at once; models with a pretrained backbone only",
    )
    users: Users | None = Field(
        None, description="one user id per row (like 'user'): every named user's head "
        "learns from their rows in one batched update",
    )  # fmt: skip

    @model_validator(mode="after")
    def _one_form(self) -> FeedbackIn:
        n_in = _inputs(self.rows, self.texts, required=False)
        new = self.rows is not None or self.texts is not None
        if (self.ids is None) == (not new):
            raise ValueError(
                "give either 'ids' (earlier predictions) or 'rows'/'texts' (new samples)"
            )
        n = len(self.ids) if self.ids is not None else n_in[0]
        if n != len(self.labels):
            raise ValueError(f"{n} ids/rows but {len(self.labels)} labels")
        if self.ids is not None and (self.subject is not None or self.task is not None):
            raise ValueError("'subject' and 'task' go with 'rows' (new samples), not 'ids'")
        personal = self.user is not None or self.users is not None
        if personal and (self.ids is not None or self.subject is not None or self.task is not None):
            raise ValueError(
                "'user' and 'users' go with 'rows' alone (the user is the samples' subject)"
            )
        _check_users(self.user, self.users, n_in)
        return self


class FeedbackOut(BaseModel):
    stored: int = Field(description="rows committed (new samples or labels set)")
    form: str = Field(description="'labels' (of earlier predictions) or 'samples'")
    details: dict[str, Any] = Field(default_factory=dict)


class VersionIn(Strict):
    version: Annotated[str, Field(min_length=1, max_length=32), AfterValidator(clean_text)]


class RollbackIn(Strict):
    version: (
        Annotated[str, Field(min_length=1, max_length=32), AfterValidator(clean_text)] | None
    ) = None


class AliasOut(BaseModel):
    production: str
    previous: str | None


class UpdateOut(BaseModel):
    accepted: bool
    updater_pid: int
    waiting_for: str | None = Field(
        None, description="the process holding the update lock now (the update runs after)"
    )


class ForgetOut(BaseModel):
    subject_hash: str
    deleted: int
    versions_holding: list[str]


class UserForgetOut(BaseModel):
    subject_hash: str
    deleted: int = Field(description="the user's samples deleted")
    versions_holding: list[str]
    head_deleted: bool = Field(description="whether the user had a personal head")


class Problem(BaseModel):
    detail: Any
