"""What makes `adapter` and `prompt` continual: the cross-entropy with old classes masked
(L2P's logit masking) leaves their head rows alone, classifier alignment (SLCA) from class
statistics, L2P's pool picks prompts by key, O-LoRA's penalty, exact removal of a pool and
checkpoints (old single-prompt ones too)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lifelong.config import TrainConfig
from lifelong.data import get_benchmark
from lifelong.data.text import encode_texts
from lifelong.models import build_model
from lifelong.models.lora import LoRAModel
from lifelong.strategies._align import align_after
from lifelong.strategies._current import masked_old_loss, old_classes
from lifelong.strategies.adapter import Adapter
from lifelong.strategies.base import Batch
from lifelong.strategies.prompt import PromptTuning
from lifelong.train import train_experience

torch.set_num_threads(1)
CFG = TrainConfig(epochs=1, batch_size=16, lr=0.1, momentum=0.0)


@pytest.fixture
def x(headlines):
    return torch.from_numpy(encode_texts(headlines))


def test_masked_cross_entropy_leaves_old_classes_rows_without_gradient() -> None:
    from lifelong.data.experience import Experience

    stream = get_benchmark("synthetic", "class")
    old, seen = old_classes([0, 1], Experience(1, stream[1].train, stream[1].test, (1, 2)))
    assert (old, seen) == ([0], [0, 1, 2])
    torch.manual_seed(0)
    head = nn.Linear(4, 6)
    feats, y = torch.randn(5, 4), torch.tensor([2, 3, 2, 0, 5])  # rows 3, 4: replay's
    batch = Batch(feats, y, torch.zeros(5, dtype=torch.long), n_stream=3)
    masked_old_loss(head(feats), batch, [0, 1]).backward()
    assert head.weight.grad is not None
    touched = head.weight.grad.abs().sum(1) > 0
    assert touched.tolist() == [True, True, True, True, True, True]  # memory rows: all
    head.zero_grad()
    stream_only = Batch(feats[:3], y[:3], torch.zeros(3, dtype=torch.long), n_stream=3)
    masked_old_loss(head(feats[:3]), stream_only, [0, 1, 3]).backward()
    assert head.weight.grad is not None
    touched = head.weight.grad.abs().sum(1) > 0
    # old 0, 1: untouched; 3 is a stream label (never masked); 4, 5 never seen: pushed down
    assert touched.tolist() == [False, False, True, True, True, True]
    plain = torch.nn.functional.cross_entropy(head(feats), y)
    assert torch.equal(masked_old_loss(head(feats), batch, None), plain)
    assert torch.equal(masked_old_loss(head(feats), batch, []), plain)


@pytest.mark.parametrize("mask", [True, False])
def test_adapter_masking_keeps_old_head_rows_through_an_experience(mask: bool) -> None:
    stream = get_benchmark("synthetic", "class")
    torch.manual_seed(0)
    model: nn.Module = build_model("mlp", stream, hidden=(16,))
    ad, gen = Adapter(rank=2, mask=mask, align=0), torch.Generator().manual_seed(0)
    model, _ = train_experience(model, [ad], stream[0], stream.experiences[:1], None, CFG, gen)
    assert isinstance(model, LoRAModel)
    head = model.model.head
    before = head.weight.detach().clone()
    model, _ = train_experience(model, [ad], stream[1], stream.experiences[:2], None, CFG, gen)
    moved = (head.weight.detach() - before).abs().sum(1) > 0
    assert moved[2:].all()  # the current classes learned, the unseen ones pushed down
    assert bool(moved[:2].any()) is not mask  # the old ones only without the mask
    assert ad.state_dict()["seen_classes_"] == [0, 1, 2, 3]


class _Linear(nn.Module):
    """A model that is its head (the features are the inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def test_alignment_calibrates_classes_learned_apart_from_their_statistics() -> None:
    from lifelong.data.experience import TensorSet

    torch.manual_seed(0)
    centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0], [0.0, -4.0]])
    y = torch.arange(4).repeat_interleave(20)
    x = centres[y] + 0.3 * torch.randn(80, 2)
    model = _Linear()
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([0.0, 0.0, -5.0, -5.0]))  # 2, 3 never win
    first, second = (TensorSet(x[y < 2], y[y < 2], y[y < 2] * 0), TensorSet(x[y >= 2], y[y >= 2], y[y >= 2] * 0))  # fmt: skip
    stats = align_after([], model, first, epochs=20)
    counts, means, variances = stats
    assert counts.tolist() == [20, 20, 0, 0] and means.shape == variances.shape == (4, 2)
    torch.testing.assert_close(means[:2], x[y < 2].view(2, 20, 2).mean(1))
    assert model(centres).argmax(1).tolist()[:2] == [0, 1]
    stats = align_after(stats, model, second, epochs=20)
    assert stats[0].tolist() == [20, 20, 20, 20]
    assert model(centres).argmax(1).tolist() == [0, 1, 2, 3]  # calibrated across the two
    assert align_after(stats, model, second, epochs=0) is stats  # off: nothing is kept


def test_statistics_of_a_class_seen_again_pool_both_experiences() -> None:
    from lifelong.strategies._align import update_stats

    torch.manual_seed(0)
    feats, y = torch.randn(30, 3) * 2 + 1, torch.tensor([0, 1] * 15)
    empty = (torch.zeros(0), torch.zeros(0, 0), torch.zeros(0, 0))
    whole = update_stats(empty, feats, y, 2)
    parts = update_stats(update_stats(empty, feats[:10], y[:10], 2), feats[10:], y[10:], 2)
    assert parts[0].tolist() == [15, 15]
    torch.testing.assert_close(parts[1], whole[1])
    torch.testing.assert_close(parts[2], whole[2], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(whole[2][0], feats[y == 0].var(0, unbiased=False) + 1e-4)


def test_orthogonality_penalty_of_stacked_adapter_sets() -> None:
    stream = get_benchmark("synthetic", "class")
    torch.manual_seed(0)
    model: nn.Module = build_model("mlp", stream, hidden=(16,))
    ad, gen = Adapter(rank=2, per_experience=True, orthogonal=1.0), torch.Generator()
    model, _ = train_experience(model, [ad], stream[0], stream.experiences[:1], None, CFG, gen)
    out = torch.zeros(1, 6)
    batch = Batch(stream[0].train.x[:2], stream[0].train.y[:2], stream[0].train.t[:2], 2)
    assert float(ad.penalty(model, batch, out)) == 0.0  # one set: nothing to be orthogonal to
    ad.begin(model, stream[1])
    assert isinstance(model, LoRAModel)
    [layer] = model.lora_layers()
    want = (layer.A[0].detach() @ layer.A[1].t()).square().sum()
    value = ad.penalty(model, batch, out)
    torch.testing.assert_close(value, want)
    model.zero_grad(set_to_none=True)
    value.backward()
    assert layer.A[0].grad is None and layer.A[1].grad is not None  # only the new set moves
    with torch.no_grad():  # an orthogonal new set costs nothing
        layer.A[1].copy_(torch.linalg.qr(layer.A[0].t(), mode="complete")[0][:, 2:4].t())
    assert float(ad.penalty(model, batch, out).detach()) == pytest.approx(0.0, abs=1e-10)


def _text_model(minilm, n_classes: int = 3):
    from lifelong.models.pretrained import TextModel

    enc = copy.deepcopy(minilm)
    enc.max_tokens = 16
    return TextModel(enc, n_classes=n_classes)


def test_pool_selects_prompts_by_key_and_prompts_each_text_with_its_own(minilm, x) -> None:
    from lifelong.models.text_prompt import add_prompt, add_prompt_pool, frozen_query

    model = _text_model(minilm)
    enc = model.backbone
    pool = add_prompt_pool(model, pool_size=4, length=2, top_k=1)
    query = frozen_query(enc, x[:2])
    assert not query.requires_grad
    with torch.no_grad():
        pool.keys[1] = query[0] * 3.0  # cosine: the scale does not matter
        pool.keys[3] = query[1]
    assert pool.select(query).tolist() == [[1], [3]]
    assert pool.match is not None and float(pool.match.detach()) == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        pooled = enc.embed(x[:2])
        pool.select(query)
    # the same as prompting each text with its selected prompt alone
    prompts = pool.prompts.detach().clone()
    for row, chosen in ((0, 1), (1, 3)):
        add_prompt(model, 2)
        with torch.no_grad():
            assert enc.prompt is not None
            enc.prompt.copy_(prompts[chosen])
            alone = enc.embed(x[row : row + 1])
        torch.testing.assert_close(pooled[row : row + 1], alone, atol=1e-5, rtol=1e-4)


def test_matching_term_trains_the_selected_keys_only(minilm, x) -> None:
    from lifelong.models.text_prompt import add_prompt_pool

    model = _text_model(minilm)
    pool = add_prompt_pool(model, pool_size=5, length=1, top_k=2)
    strategy = PromptTuning(length=1, pool_size=5, top_k=2, lambda_=1.0)
    out = model(x[:1])
    strategy.penalty(model, Batch(x[:1], torch.zeros(1).long(), torch.zeros(1).long(), 1), out).backward()  # fmt: skip
    assert pool.match is None  # consumed by the penalty
    assert pool.keys.grad is not None
    assert (pool.keys.grad.abs().sum(1) > 0).sum() == 2


def test_pool_removal_restores_the_embeddings_bit_for_bit(minilm, x) -> None:
    from lifelong.models.text_prompt import add_prompt_pool, remove_prompt

    model = _text_model(minilm)
    enc = model.backbone
    with torch.no_grad():
        before = enc.embed(x)
    assert enc.frozen()
    add_prompt_pool(model, pool_size=3, length=2, top_k=2)
    assert not enc.frozen()
    with torch.no_grad():
        assert not torch.allclose(enc.embed(x), before, atol=1e-3)
    strategy_removed = PromptTuning.remove(model)
    assert strategy_removed is model and enc.prompt is None and enc.frozen()
    with torch.no_grad():
        assert torch.equal(enc.embed(x), before)
    assert remove_prompt(model) is None
    with pytest.raises(ValueError, match="no prompt"):
        PromptTuning.remove(model)


def test_a_single_prompt_saved_before_pools_existed_is_rebuilt(minilm, x) -> None:
    old = _text_model(minilm)
    from lifelong.models.text_prompt import add_prompt

    add_prompt(old, 3)
    saved = {k: v.clone() for k, v in old.state_dict().items()}
    assert saved["backbone.prompt"].shape == (3, 384)
    strategy = PromptTuning(length=3)
    strategy.load_state_dict({"added_": True})  # what an older version saved
    rebuilt = strategy.rebuild(_text_model(minilm))
    rebuilt.load_state_dict(saved)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), old(x))


def test_prompt_pool_learner_round_trips_through_save_and_load(tmp_path, x) -> None:
    from lifelong import Learner

    y = torch.tensor([0, 1, 0, 1, 0, 1])
    spec = "prompt(length=2,pool_size=3,top_k=2)"
    learner = Learner("text:minilm(max_tokens=16)", spec, config=TrainConfig(epochs=1))
    learner.learn(x, y)
    state = learner.strategies[0].state_dict()
    assert state["added_"] is True and state["pooled_"] is True
    assert state["seen_classes_"] == [0, 1]
    learner.save(tmp_path / "m")
    loaded = Learner.load(tmp_path / "m")
    assert torch.equal(loaded.predict_proba(x), learner.predict_proba(x))
    assert loaded.model is not None
    assert loaded.model.backbone.prompt.prompts.shape == (3, 2, 384)


def test_old_specs_still_parse() -> None:
    from lifelong.strategies.registry import build_strategies

    [ad] = build_strategies("adapter(rank=4)")
    [pr] = build_strategies("prompt(length=8)")
    assert (ad.rank, ad.mask, ad.orthogonal) == (4, True, 0.0)
    assert (pr.length, pr.pool_size, pr.top_k, pr.mask) == (8, 10, 1, True)
    with pytest.raises(ValueError, match="top_k"):
        PromptTuning(pool_size=2, top_k=3)


def test_slow_adapters_keep_their_outputs_and_scale_their_gradients() -> None:
    from lifelong.models.lora import LoRALinear

    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(5, 3), rank=2, alpha=4.0)
    layer.add_set(-1)
    with torch.no_grad():
        layer.B[0].normal_()
    x = torch.randn(4, 5)
    grads = []
    for scale in (1.0, 0.1):
        layer.grad_scale = scale
        out = layer(x)
        layer.zero_grad(set_to_none=True)
        out.square().sum().backward()
        grads.append((out.detach(), layer.A[0].grad, layer.B[0].grad))
    (out1, a1, b1), (out2, a2, b2) = grads
    assert torch.equal(out1, out2)  # bit for bit: a checkpoint predicts the same
    torch.testing.assert_close(a2, 0.1 * a1)
    torch.testing.assert_close(b2, 0.1 * b1)
    assert Adapter(slow=0.1).get_params()["slow"] == 0.1
    with pytest.raises(ValueError, match="slow"):
        Adapter(slow=0.0)
