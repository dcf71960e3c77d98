"""The real MiniLM as a lifelong backbone: embeddings, the feature cache, saving, adapters
(LoRA, prompt) and their exact removal, and `text:minilm` through the learner."""

from __future__ import annotations

import copy

import pytest
import torch

from lifelong.data.text import encode_texts
from lifelong.features import get_cache


@pytest.fixture
def x(headlines):
    return torch.from_numpy(encode_texts(headlines))


@pytest.mark.slow  # sentence-transformers is slow to import
def test_embeddings_match_sentence_transformers(minilm, headlines, need):
    need("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    from lifelong.models.pretrained import find_text_folder

    ref = SentenceTransformer(str(find_text_folder("minilm")), device="cpu")
    want = torch.from_numpy(ref.encode(headlines))
    got = minilm.encode(headlines) / minilm.scale  # the outputs are the embeddings, scaled
    assert got.shape == (6, 384) and minilm.scale == pytest.approx(384**0.5)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_frozen_features_are_computed_once_and_shared_through_disk(minilm, x, feature_cache):
    enc = copy.deepcopy(minilm).requires_grad_(False)
    enc.setup_cache(enc.transformer, "test-key", True)
    first = enc(x[:4])
    cache = get_cache("test-key")
    assert (cache.misses, cache.hits) == (4, 0)
    both = enc(x)  # 4 rows from the cache, 2 computed
    assert (cache.misses, cache.hits) == (6, 4)
    torch.testing.assert_close(both / enc.scale, minilm.embed(x), atol=1e-5, rtol=1e-4)
    assert torch.equal(both[:4], first)
    cache.flush()
    assert list(feature_cache.glob("test-key/*.pt"))
    from lifelong.features import clear_caches

    clear_caches()  # a new process: reads the shards, computes nothing
    again = get_cache("test-key")
    assert torch.equal(again.lookup(x, lambda rows: pytest.fail("recomputed")) * enc.scale, both)


def test_cache_is_bypassed_while_the_backbone_can_change(minilm, x):
    from lifelong.models.lora import add_lora
    from lifelong.models.pretrained import TextModel
    from lifelong.models.text_prompt import add_prompt, remove_prompt

    model = TextModel(copy.deepcopy(minilm), n_classes=3)
    enc = model.backbone
    assert enc.frozen()
    enc.transformer.encoder.layer[0].output.dense.weight.requires_grad_(True)
    assert not enc.frozen()
    enc.transformer.requires_grad_(False)
    add_prompt(model, 2)
    assert not enc.frozen()
    remove_prompt(model)
    lora = add_lora(model, rank=2)
    assert not enc.frozen()
    lora.remove()
    assert enc.frozen()
    with torch.no_grad():
        enc.transformer.encoder.layer[0].output.dense.weight.mul_(1.0)
    assert not enc.frozen()  # weights changed in place: no longer the pretrained features


def test_lora_and_prompt_removal_restore_the_embeddings_bit_for_bit(minilm, x):
    from lifelong.models.lora import add_lora
    from lifelong.models.pretrained import TextModel
    from lifelong.models.text_prompt import add_prompt, remove_prompt

    model = TextModel(copy.deepcopy(minilm), n_classes=3)
    enc = model.backbone
    with torch.no_grad():
        before = enc.embed(x)
    lora = add_lora(model, rank=4)
    lora.add_set(-1)
    n = 0
    for layer in lora.lora_layers():
        torch.nn.init.normal_(layer.B[0], std=0.05)
        n += 1
    assert n == 36  # query, key, value, attention output, intermediate, output x 6 layers
    prompt = add_prompt(model, 3)
    with torch.no_grad():
        adapted = enc.embed(x)
    assert not torch.allclose(adapted, before, atol=1e-3)
    assert prompt.shape == (3, 384)
    remove_prompt(model)
    lora.remove()
    with torch.no_grad():
        assert torch.equal(enc.embed(x), before)


def test_saved_learner_leaves_out_pretrained_weights_and_predicts_the_same(tmp_path, x):
    from lifelong import Learner, TrainConfig

    y = torch.tensor([0, 0, 1, 1, 2, 2])
    learner = Learner("text:minilm(max_tokens=32)", "naive", config=TrainConfig(epochs=2))
    learner.learn(x, y)
    learner.save(tmp_path / "m")
    size = sum(f.stat().st_size for f in (tmp_path / "m").rglob("*") if f.is_file())
    assert size < 1_000_000  # the head, not MiniLM's 90 MB
    loaded = Learner.load(tmp_path / "m")
    assert torch.equal(loaded.predict_proba(x), learner.predict_proba(x))
    loaded.learn(x, y)  # goes on learning
    assert loaded.model.backbone.frozen()


@pytest.mark.parametrize("spec", ["adapter(rank=2)", "prompt(length=2)"])
def test_adapter_and_prompt_strategies_train_and_resume(tmp_path, x, spec):
    from lifelong import Learner, TrainConfig

    y = torch.tensor([0, 1, 0, 1, 0, 1])
    learner = Learner("text:minilm(max_tokens=24)", spec, config=TrainConfig(epochs=1))
    learner.learn(x, y)
    trainable = [n for n, p in learner.model.named_parameters() if p.requires_grad]
    assert any("prompt" in n or ".A." in n for n in trainable)
    assert not any("transformer" in n and (".base." in n or n.endswith("dense.weight")) for n in trainable)  # fmt: skip
    learner.save(tmp_path / "m")
    loaded = Learner.load(tmp_path / "m")
    assert torch.equal(loaded.predict_proba(x), learner.predict_proba(x))


def test_model_spec_errors(headlines):
    from lifelong import Learner

    with pytest.raises(ValueError, match="neither a folder nor an installed package"):
        Learner("text:no-such-model").learn(encode_texts(headlines[:2]), [0, 1])
    with pytest.raises(ValueError, match="takes texts"):
        Learner("text:minilm").learn(torch.zeros(2, 3, 4), [0, 1])


def test_image_backbone_needs_timm_or_torchvision():
    from lifelong.data.experience import Experience, Stream, TensorSet
    from lifelong.models import build_model

    data = TensorSet(torch.zeros(4, 3, 32, 32), torch.tensor([0, 1, 0, 1]), torch.zeros(4).long())
    stream = Stream("s", "class", (Experience(0, data, data, (0, 1), 0),), 2)
    try:
        model = build_model("image:resnet18", stream)
    except ValueError as e:
        assert "needs timm or torchvision" in str(e)
        return
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 2) and model.backbone.frozen()


@pytest.mark.slow
def test_compare_on_a_csv_with_a_text_column_runs_offline(tmp_path, headlines, monkeypatch):
    pd = pytest.importorskip("pandas")
    from lifelong.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    labels = ["up", "up", "down", "down", "up", "down"] * 3
    pd.DataFrame({"text": headlines * 3, "label": labels}).to_csv(tmp_path / "r.csv", index=False)
    rc = main([
        "compare", "--data", str(tmp_path / "r.csv"), "--text-column", "text",
        "--target", "label", "--model", "text:minilm(max_tokens=32)", "--scenario", "class",
        "--classes-per-experience", "1", "--strategies", "naive,replay(mem_size=4)",
        "--seeds", "0", "--epochs", "1", "--workers", "1", "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    assert rc == 0
    import json

    rows = json.loads((tmp_path / "out" / "results.json").read_text())["runs"]
    assert {r["strategy"] for r in rows} == {"naive", "replay(mem_size=4)"}
    assert all(r["status"] == "ok" for r in rows)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    from test_readme import python_blocks  # tests/test_readme.py

    (block,) = python_blocks("Text and pretrained backbones")
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - our own README
    assert scope["feats"].shape == (1, 384)
    assert list(scope["learner"].class_names) == ["fresh", "rotten"]
