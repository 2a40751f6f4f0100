"""Model zoo for the trainer: ``build_model(name, preset, **overrides)``."""

from __future__ import annotations

import dataclasses
from typing import Any

from lrkit.train.models.gpt2 import GPT2, GPT2_PRESETS, GPT2Config
from lrkit.train.models.llama3 import LLAMA3_PRESETS, Llama3, Llama3Config

__all__ = [
    "GPT2",
    "GPT2Config",
    "GPT2_PRESETS",
    "LLAMA3_PRESETS",
    "LanguageModel",
    "Llama3",
    "Llama3Config",
    "MODEL_NAMES",
    "build_model",
]

MODEL_NAMES = ("gpt2", "llama3")

#: What ``build_model`` returns: an ``nn.Module`` with ``.config`` (``block_size``, ``vocab_size``, ...) and
#: ``forward(idx, targets=None) -> (logits, loss)``.
LanguageModel = GPT2 | Llama3


def build_model(name: str, preset: str, **overrides: Any) -> LanguageModel:
    """Build ``name`` ("gpt2" or "llama3") with the shape of ``preset``, fields replaced by ``overrides``.

    Example: ``build_model("gpt2", "tiny", block_size=128, dropout=0.1)``. The model's ``.config`` is the
    resulting frozen config dataclass. Weights are initialised from torch's global RNG, so call
    ``torch.manual_seed`` first for a reproducible model.
    """
    model: LanguageModel
    if name == "gpt2":
        config = _config_from_preset(name, GPT2_PRESETS, preset, overrides)
        assert isinstance(config, GPT2Config)
        model = GPT2(config)
    elif name == "llama3":
        config = _config_from_preset(name, LLAMA3_PRESETS, preset, overrides)
        assert isinstance(config, Llama3Config)
        model = Llama3(config)
    else:
        raise ValueError(f"name must be one of {list(MODEL_NAMES)}, got name={name!r}")
    return model


def _config_from_preset(name: str, presets: dict[str, Any], preset: str, overrides: dict[str, Any]) -> Any:
    if preset not in presets:
        raise ValueError(f"preset for {name} must be one of {list(presets)}, got preset={preset!r}")
    base = presets[preset]
    fields = [f.name for f in dataclasses.fields(base)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown {name} config field(s) {unknown}; valid fields are {fields}")
    return dataclasses.replace(base, **overrides)
