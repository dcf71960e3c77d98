"""The request and response bodies of `lifelong serve` (pydantic models, so the served
OpenAPI schema documents them and a malformed body is refused with a 422 naming the
field). Numbers must be finite; ids fit the database's 32-bit integers; text is valid
UTF-8 without NUL characters (PostgreSQL refuses those)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

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
Subjects = Subject | Annotated[list[Subject | None], Field(max_length=MAX_ROWS)] | None
Tasks = ClassId | Annotated[list[ClassId], Field(max_length=MAX_ROWS)] | None
User = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")]
Users = Annotated[list[User], Field(min_length=1, max_length=MAX_ROWS)]


def _check_users(user: str | None, users: list[str] | None, rows: list[Any] | None) -> None:
    """`user` or `users` (one id per row), not both."""
    if user is not None and users is not None:
        raise ValueError("give 'user' (one for every row) or 'users' (one per row), not both")
    if users is not None and len(users) != len(rows or []):
        raise ValueError(f"'users' has {len(users)} ids but 'rows' has {len(rows or [])} rows")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictIn(Strict):
    rows: Rows = Field(description="feature rows (flattened to the model's input shape)")
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
        _check_users(self.user, self.users, self.rows)
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
        if (self.ids is None) == (self.rows is None):
            raise ValueError("give either 'ids' (earlier predictions) or 'rows' (new samples)")
        n = len(self.ids if self.ids is not None else self.rows or [])
        if n != len(self.labels):
            raise ValueError(f"{n} ids/rows but {len(self.labels)} labels")
        if self.ids is not None and (self.subject is not None or self.task is not None):
            raise ValueError("'subject' and 'task' go with 'rows' (new samples), not 'ids'")
        personal = self.user is not None or self.users is not None
        if personal and (self.ids is not None or self.subject is not None or self.task is not None):
            raise ValueError(
                "'user' and 'users' go with 'rows' alone (the user is the samples' subject)"
            )
        _check_users(self.user, self.users, self.rows)
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
