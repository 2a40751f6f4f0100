"""Each model owns its parallel plan and its pipeline split; the layouts name no model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrkit.train.models import MODEL_NAMES, build_model
from lrkit.train.parallel import parallel_plan_of


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_name_in_a_models_parallel_plan_is_one_of_its_modules(name: str) -> None:
    model = build_model(name, "tiny")
    parts = parallel_plan_of(model)
    for block in model.get_submodule(parts.blocks):
        for part in (parts.attention, parts.mlp, *parts.norms, *parts.attention_in, parts.attention_out,
                     *parts.mlp_in, parts.mlp_out):  # fmt: skip
            block.get_submodule(part)
    for part in (parts.embedding, parts.final_norm, parts.head, parts.first_block):
        model.get_submodule(part)
    head, embedding = model.get_submodule(parts.head), model.get_submodule(parts.embedding)
    assert parts.tied_head == (head.weight is embedding.weight)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_pipeline_stages_compose_to_the_model(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, "tiny").eval()
    idx = torch.randint(0, model.config.vocab_size, (2, 16))
    n = model.config.n_layer
    cuts = [(0, 1), (1, n - 1), (n - 1, n)]
    stages = [model.pipeline_stage(lo, hi, first=i == 0, last=i == len(cuts) - 1) for i, (lo, hi) in enumerate(cuts)]
    x = idx
    with torch.no_grad():
        for stage in stages:
            x = stage(x)
        logits, _ = model(idx)
    assert torch.equal(x, logits)


def test_a_model_without_a_plan_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="Linear declares no parallel_plan"):
        parallel_plan_of(nn.Linear(2, 2))
