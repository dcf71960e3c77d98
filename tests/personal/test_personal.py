"""Personal heads: isolation between users, batched updates, mixed-user prediction,
per-user strategies, forgetting, and saving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lifelong.personal import (
    SHARED,
    HeadRule,
    HeadTraining,
    PersonalHeads,
    load,
    load_user,
    save,
    save_user,
)
from lifelong.serialize import CheckpointError

DIM, C = 6, 4


def rows(seed: int, n: int = 24, classes: tuple[int, ...] = (0, 1, 2, 3)) -> tuple:
    """Separable toy rows: class k's features centred on a direction of its own."""
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(classes)[torch.randint(len(classes), (n,), generator=g)]
    centres = torch.eye(DIM)[:C] * 3
    return centres[y] + 0.5 * torch.randn(n, DIM, generator=g), y


def model(**kw) -> PersonalHeads:
    kw.setdefault("train", HeadTraining(steps=30, lr=0.1, batch_size=16))
    return PersonalHeads(DIM, C, **kw)


def snapshot(m: PersonalHeads, uid: str) -> list[torch.Tensor]:
    w, b, seen = m.bank.get(m.bank.index([uid]))
    s = m.states[uid]
    mem = s.memory.rows() if s.memory is not None else None
    extra = [] if mem is None else [mem.x.clone(), mem.y.clone()]
    return [w, b, seen, *extra, *(s.fisher or ()), *(s.anchor or ())]


def test_one_users_update_leaves_every_other_user_bit_identical() -> None:
    m = model(strategy="replay(mem_size=8)+ewc(lambda=1)+lwf(alpha=0.5)")
    m.update_shared(*rows(0))
    m.update({f"u{i}": rows(i + 1) for i in range(5)})
    probe = rows(99, n=40)[0]
    others = [f"u{i}" for i in range(1, 5)]
    before = {u: snapshot(m, u) for u in others}
    mixed = [others[i % 4] for i in range(40)]
    pred_before = m.logits(probe, mixed)
    m.update({"u0": rows(50, classes=(2, 3))})
    m.update({"u0": rows(51)})
    for u in others:
        assert all(torch.equal(a, b) for a, b in zip(before[u], snapshot(m, u), strict=True))
    assert torch.equal(m.logits(probe, mixed), pred_before)
    assert not torch.equal(m.logits(probe, "u0"), m.logits(probe, "u1"))


def test_batched_update_matches_each_user_updated_alone() -> None:
    specs = ["replay(mem_size=6)+ewc(lambda=2)", "naive", "lwf(alpha=1)", "ewc(lambda=5)"]
    data = {f"u{i}": rows(i, n=10 + 7 * i) for i in range(4)}
    together = model(strategy="replay(mem_size=6)")
    together.update_shared(*rows(9))
    for i, spec in enumerate(specs):
        together.add_user(f"u{i}", strategy=spec)
    alone = load_copy(together)
    for _ in range(2):
        together.update(data)
        for uid, xy in data.items():
            alone.update({uid: xy})
    for uid in data:
        for a, b in zip(snapshot(together, uid), snapshot(alone, uid), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def load_copy(m: PersonalHeads) -> PersonalHeads:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        save(m, Path(d) / "m")
        return load(Path(d) / "m")


@pytest.mark.parametrize("per_user", [1, 3, 40])  # one user; grouped rows; one row per user
def test_mixed_batch_is_scored_by_each_rows_own_head(per_user: int) -> None:
    m = model(strategy="naive")
    users = [f"u{i}" for i in range(40)]
    m.update({u: rows(i, n=8) for i, u in enumerate(users)})
    x = rows(7, n=40)[0]
    ids = [users[i % per_user] for i in range(40)]
    got = m.logits(x, ids)
    for i, u in enumerate(ids):
        w, b, seen = m.bank.get(m.bank.index([u]))
        want = (w[0] @ x[i] + b[0]).masked_fill(~seen[0], float("-inf"))
        torch.testing.assert_close(got[i], want)
    assert torch.equal(m.predict(x, ids), got.argmax(1))


def layouts(n: int, g: torch.Generator) -> dict[str, list[int]]:
    """Slot layouts a mixed batch can have (slots of a 12-head bank)."""
    perm = torch.randperm(n, generator=g).tolist()
    even = [i * 4 // n for i in range(n)]  # 4 users, contiguous equal runs
    uneven = sorted(torch.randint(5, (n,), generator=g).tolist())  # contiguous, uneven
    skewed = [0] * (n - 3) + [7, 8, 9]  # one user has nearly every row
    return {
        "one": [3] * n,
        "even": even,
        "uneven": uneven,
        "shuffled": [even[i] for i in perm],
        "shuffled_uneven": [uneven[i] for i in perm],
        "skewed_shuffled": [skewed[i] for i in perm],
        "runs_repeat": [(i // 5) % 3 for i in range(n)],  # a user in several runs
        "interleaved": [i % 12 for i in range(n)],
        "distinct": torch.randperm(12, generator=g).tolist(),  # fewer rows: one a user
    }


@pytest.mark.parametrize("block", [None, 1, 3000])  # one block; one chunk per block; a few
def test_bank_scores_every_layout_by_each_rows_own_head(
    block: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lifelong.personal import heads

    if block is not None:
        monkeypatch.setattr(heads, "BLOCK_FLOATS", block)
    g = torch.Generator().manual_seed(0)
    bank = heads.HeadBank(DIM, C, capacity=12)
    for u in range(12):
        seen = torch.rand(C, generator=g) < 0.6 if u % 4 else torch.zeros(C, dtype=torch.bool)
        bank.add(f"u{u}", torch.randn(C, DIM, generator=g), torch.randn(C, generator=g), seen)
    for name, slots in layouts(36, g).items():
        x = torch.randn(len(slots), DIM, generator=g)
        s = torch.tensor(slots)
        w, b, seen = bank.get(s)
        want = torch.einsum("nd,ncd->nc", x, w) + b
        keep = seen | ~seen.any(1, keepdim=True)
        for given in (s, s.numpy(), slots[0] if name == "one" else s):
            torch.testing.assert_close(bank.logits(x, given), want, msg=name)
            got = bank.masked_logits(x, given)
            torch.testing.assert_close(got, want.masked_fill(~keep, float("-inf")), msg=name)
        xg = x.clone().requires_grad_(True)  # gradients flow to the features
        bank.logits(xg, s).square().sum().backward()
        assert xg.grad is not None
        torch.testing.assert_close(xg.grad, torch.einsum("nc,ncd->nd", 2 * want, w))
    assert bank.logits(x[:0], torch.zeros(0, dtype=torch.long)).shape == (0, C)
    with pytest.raises(ValueError, match="one slot per row"):
        bank.logits(x, torch.zeros(3, dtype=torch.long))


def test_masked_bias_follows_every_change_to_the_heads() -> None:
    m = model(strategy="naive", shared=False)
    m.add_user("a")
    x = rows(1, n=10)[0]
    assert torch.isfinite(m.logits(x, "a")).all()  # learned nothing: every column kept
    m.update({"a": rows(2, classes=(0, 2))})
    assert torch.isinf(m.logits(x, "a")[:, [1, 3]]).all()  # seen through put()
    assert torch.isfinite(m.logits(x, "a")[:, [0, 2]]).all()
    m.bank.seen[m.bank.slots["a"], 1] = True  # an in-place write outside the bank's methods
    assert torch.isfinite(m.logits(x, "a")[:, 1]).all()
    m.bank.bias[m.bank.slots["a"], 0] = 1e4
    assert (m.predict(x, "a") == 0).all()
    for u in range(40):  # the bank grows: new tensors
        m.add_user(f"n{u}")
    assert torch.isfinite(m.logits(x, ["n39"] * 10)).all()
    m.forget("a")
    m.add_user("b")  # a's slot reused, zeroed: nothing masked
    assert torch.isfinite(m.logits(x, "b")).all()


def test_new_user_starts_from_the_shared_head_and_personalises() -> None:
    m = model(strategy="naive")
    x, y = rows(0, n=60)
    m.update_shared(x, y)
    m.add_user("new")
    assert torch.equal(m.logits(x, "new"), m.logits(x, SHARED))
    swapped = torch.tensor([1, 0, 2, 3])[y]  # this user names classes 0 and 1 the other way
    for _ in range(3):
        m.update({"new": (x, swapped)})
    acc_new = (m.predict(x, "new") == swapped).float().mean()
    acc_shared = (m.predict(x, SHARED) == swapped).float().mean()
    assert acc_new > 0.9 > acc_shared + 0.3
    bare = model(strategy="naive", shared=False)
    bare.add_user("a")
    assert torch.count_nonzero(bare.bank.get(bare.bank.index(["a"]))[0]) == 0


def test_replay_memory_keeps_the_quota_and_reduces_forgetting() -> None:
    accs = {}
    for spec in ("naive", "replay(mem_size=20)"):
        m = model(strategy=spec, shared=False)
        first = rows(1, n=60, classes=(0, 1))
        m.update({"u": first})
        m.update({"u": rows(2, n=60, classes=(2, 3))})
        accs[spec] = (m.predict(first[0], "u") == first[1]).float().mean().item()
        mem = m.states["u"].memory
        assert (mem is None) == (spec == "naive")
        assert mem is None or len(mem) == 20
    assert accs["replay(mem_size=20)"] > accs["naive"] + 0.3


def test_ewc_and_lwf_hold_the_head_closer_to_its_past() -> None:
    moved = {}
    for spec in ("naive", "ewc(lambda=1000)", "lwf(alpha=5)"):
        m = model(strategy=spec, shared=False)
        first = rows(1, n=60, classes=(0, 1))
        m.update({"u": first})
        before = m.logits(first[0], "u")[:, :2].log_softmax(1)
        m.update({"u": rows(2, n=60, classes=(0, 1, 2, 3))})
        after = m.logits(first[0], "u")[:, :2].log_softmax(1)
        moved[spec] = (after - before).abs().mean().item()
    assert moved["ewc(lambda=1000)"] < moved["naive"] / 2
    assert moved["lwf(alpha=5)"] < moved["naive"]


def test_users_can_each_have_their_own_strategy() -> None:
    m = model(strategy="naive")
    m.add_user("r", strategy="replay(mem_size=5)")
    m.update({"r": rows(1), "n": rows(2)})
    assert m.states["n"].memory is None and len(m.states["r"].memory) == 5


def test_forget_deletes_the_users_head_memory_and_state() -> None:
    m = model(strategy="replay(mem_size=8)+ewc(lambda=1)")
    m.update({"a": rows(1), "b": rows(2)})
    slot = m.bank.slots["a"]
    keep = snapshot(m, "b")
    m.forget("a")
    assert "a" not in m and m.users == ["b"] and "a" not in m.states
    assert not m.bank.weight[slot].any() and not m.bank.seen[slot].any()
    with pytest.raises(KeyError, match="'a'"):
        m.predict(rows(3)[0], "a")
    with pytest.raises(KeyError, match="'a'"):
        m.forget("a")
    assert all(torch.equal(x, y) for x, y in zip(keep, snapshot(m, "b"), strict=True))
    m.add_user("c")  # the freed slot is reused and starts from the shared head
    assert m.bank.slots["c"] == slot
    assert torch.equal(m.logits(rows(3)[0], "c"), m.logits(rows(3)[0], SHARED))


def test_save_and_load_continue_bit_for_bit(tmp_path: Path) -> None:
    m = model(strategy="replay(mem_size=8)+ewc(lambda=1)+lwf(alpha=0.5)")
    m.update_shared(*rows(0))
    m.update({"a": rows(1), "b": rows(2, classes=(1, 2))})
    save(m, tmp_path / "m")
    m2 = load(tmp_path / "m")
    assert m2.users == ["a", "b"] and m2.default_rule == m.default_rule
    for other in (m, m2):
        other.update({"b": rows(3)})
        other.add_user("c")
    x = rows(4, n=30)[0]
    ids = ["a", "b", "c"] * 10
    assert torch.equal(m.logits(x, ids), m2.logits(x, ids))
    save_user(m, "b", tmp_path / "b")
    m3 = model(strategy="naive")
    assert load_user(m3, tmp_path / "b") == "b"
    assert torch.equal(m3.logits(x, "b"), m.logits(x, "b"))
    assert len(m3.states["b"].memory) == 8
    (tmp_path / "m" / "tensors.pt").write_bytes(b"broken")
    with pytest.raises(CheckpointError, match="tensors.pt"):
        load(tmp_path / "m")


def test_bad_input_is_refused_by_name_and_changes_nothing() -> None:
    m = model(strategy="naive")
    m.update({"a": rows(1)})
    keep = snapshot(m, "a")
    x, y = rows(2)
    with pytest.raises(ValueError, match=r"user 'b'.*\[0, 4\), got 7"):
        m.update({"a": (x, y), "b": (x, torch.full_like(y, 7))})
    with pytest.raises(ValueError, match=r"user 'a'.*\[n >= 1, 6\]"):
        m.update({"a": (x[:, :3], y)})
    with pytest.raises(ValueError, match="'bad id/'"):
        m.update({"bad id/": (x, y)})
    with pytest.raises(ValueError, match="NaN"):
        m.update({"a": (torch.full_like(x, float("nan")), y)})
    assert all(torch.equal(p, q) for p, q in zip(keep, snapshot(m, "a"), strict=True))
    assert m.users == ["a"]
    with pytest.raises(ValueError, match="one user per row"):
        m.predict(x, ["a"])
    with pytest.raises(ValueError, match="unknown head strategy 'gem'"):
        m.add_user("z", strategy="gem")
    with pytest.raises(ValueError, match="mem_size"):
        HeadRule.parse("replay(mem_size=-1)")


def test_rule_specs_round_trip() -> None:
    for spec in ("naive", "replay(mem_size=5)", "replay(mem_size=5)+ewc(lambda=2.5)+lwf(alpha=1)"):
        assert HeadRule.parse(spec).spec == spec
    assert HeadRule.parse("lwf(temperature=3)").spec == "lwf(alpha=1,temperature=3)"


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_readme import python_blocks  # tests/test_readme.py

    (block,) = python_blocks("Personalization")
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - our own README
    heads = scope["heads"]
    assert isinstance(heads, PersonalHeads) and heads.users == ["alice", "carol"]
    assert (tmp_path / "personal" / "meta.json").is_file()


def test_user_folder_saves_loads_and_forgets_one_user(tmp_path: Path) -> None:
    from lifelong.personal import UserFolder

    m = model(strategy="replay(mem_size=8)")
    m.update_shared(*rows(0))
    m.update({"a": rows(1), "b@x.org": rows(2)})
    folder = UserFolder(tmp_path / "users")
    folder.save(m)
    assert folder.stored_users() == ["a", "b@x.org"]
    only_b = folder.load(["b@x.org"])
    x = rows(3)[0]
    assert only_b.users == ["b@x.org"] and only_b.shared
    assert torch.equal(only_b.logits(x, "b@x.org"), m.logits(x, "b@x.org"))
    assert torch.equal(only_b.logits(x, SHARED), m.logits(x, SHARED))
    assert folder.forget("a", m) and "a" not in m
    assert folder.stored_users() == ["b@x.org"] and not (tmp_path / "users" / "u" / "a").exists()
    assert not folder.forget("a")
    with pytest.raises(KeyError, match="'a'"):
        folder.load(["a"])
    with pytest.raises(ValueError, match="not valid"):
        folder.forget("../etc")
