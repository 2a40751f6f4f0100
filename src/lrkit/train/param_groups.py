"""Named param groups by depth for GPT-2 / LLaMA-3 style models: layer-wise LR decay and part groups.

:func:`layerwise_lr_decay` and :func:`part_groups` split a model into named param groups by depth
(embeddings, blocks, final norm and head), keeping no weight decay for biases and norm gains (nanoGPT's
rule: a parameter decays if it has >= 2 dims). A group's *LR factor* (``"lr_factor"`` in the group dict)
is its peak LR divided by the base LR it was built from; :func:`lrkit.spec.groups.scale_absolute_lrs`
scales a schedule's absolute floors to match.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lrkit.schedules._checks import check_real

__all__ = ["layer_depths", "layerwise_lr_decay", "part_groups", "scale_groups", "NO_DECAY_SUFFIX"]

#: The name of a group's twin holding its 1-D parameters (biases, norm gains): ``"body" -> "body_no_decay"``.
NO_DECAY_SUFFIX = "_no_decay"


def _blocks_prefix(model: Any, blocks: str | None) -> tuple[str, int]:
    """The dotted name of the model's list of blocks and its length ``L``."""
    from torch import nn

    if blocks is not None:
        module = model.get_submodule(blocks)
        if not isinstance(module, (nn.ModuleList, nn.Sequential)):
            raise TypeError(f"blocks must name a ModuleList of blocks, got blocks={blocks!r} ({type(module).__name__})")
        return blocks, len(module)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return name, len(module)
    raise ValueError(
        f"cannot find the blocks of {type(model).__name__}: no nn.ModuleList in it; pass blocks='<dotted name>'"
    )


def layer_depths(model: Any, blocks: str | None = None) -> tuple[dict[str, int], int]:
    """The depth of every trainable parameter by name, and the number of blocks ``L``.

    Depth 0: embeddings (parameters of ``nn.Embedding`` modules outside the blocks); depth ``i + 1``:
    block ``i`` (``i = 0 .. L-1``); depth ``L + 1``: everything else (the final norm and the head).
    ``blocks`` is the dotted name of the ``nn.ModuleList`` of blocks; by default the model's first
    non-empty ``ModuleList`` (``transformer.h`` for GPT-2, ``layers`` for LLaMA-3). A parameter shared
    by two modules has the depth of the first name ``named_parameters`` gives it: GPT-2's ``lm_head`` is
    tied to ``transformer.wte``, so that one matrix is an embedding (depth 0).
    """
    from torch import nn

    prefix, num_layers = _blocks_prefix(model, blocks)
    embedding_params = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)
    }
    depths: dict[str, int] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith(prefix + "."):
            depths[name] = int(name[len(prefix) + 1 :].split(".", 1)[0]) + 1
        elif id(param) in embedding_params:
            depths[name] = 0
        else:
            depths[name] = num_layers + 1
    return depths, num_layers


def _grouped(
    model: Any, label: Any, factor: Any, weight_decay: float, lr: float, blocks: str | None
) -> list[dict[str, Any]]:
    """One group per (depth label, decays?), by depth; ``label(depth)`` names it, ``factor(depth)`` scales its LR."""
    check_real("lr", lr, low=0.0)
    check_real("weight_decay", weight_decay, low=0.0)
    depths, _ = layer_depths(model, blocks)
    params = dict(model.named_parameters())
    groups: dict[str, dict[str, Any]] = {}
    order: dict[str, tuple[int, bool]] = {}
    for name, depth in depths.items():
        param = params[name]
        decays = param.dim() >= 2
        key = label(depth) + ("" if decays else NO_DECAY_SUFFIX)
        if key not in groups:
            f = float(factor(depth))
            order[key] = (depth, not decays)
            groups[key] = {
                "params": [],
                "name": key,
                "lr": lr * f,
                "lr_factor": f,
                "weight_decay": weight_decay if decays else 0.0,
            }
        groups[key]["params"].append(param)
    return [groups[key] for key in sorted(groups, key=lambda k: order[k])]  # by depth, decaying group first


def layerwise_lr_decay(
    model: Any, lr: float, decay: float, weight_decay: float = 0.0, blocks: str | None = None
) -> list[dict[str, Any]]:
    """Param groups for layer-wise LR decay (LLRD), BEiT's convention.

    With ``L`` blocks and the depths of :func:`layer_depths` (0 embeddings, ``i + 1`` block ``i``,
    ``L + 1`` final norm and head), a parameter at depth ``d`` trains with peak LR

        ``lr_d = lr * decay ** (L + 1 - d)``

    so the head has ``lr``, each block ``decay`` times the LR of the block above it, and the embeddings
    ``lr * decay ** (L + 1)``. This is BEiT's ``LayerDecayValueAssigner`` (``decay ** (num_layers + 1 - i)``),
    also used by MAE and timm; ELECTRA counts one more depth for its task head.

    Groups are named ``embed``, ``block0`` .. ``block{L-1}``, ``head``; each 1-D parameter (bias, norm gain)
    goes to the ``<name>_no_decay`` twin with ``weight_decay = 0``, matrices get ``weight_decay``. Every group
    dict holds ``"params"``, ``"name"``, ``"lr"`` (the peak, absolute) and ``"lr_factor"``
    (``decay ** (L + 1 - d)``); empty groups are left out. Give the LLM schedules per-group floors
    ``min_lr * lr_factor`` (:func:`scale_absolute_lrs`).

    Args:
        model: an ``nn.Module`` with a ``ModuleList`` of blocks (GPT-2, LLaMA-3, ...).
        lr: the head's LR (absolute), ``>= 0``.
        decay: the per-block factor, in ``(0, 1]`` (1: every group at ``lr``).
        weight_decay: for matrices (dim >= 2), ``>= 0``.
        blocks: dotted name of the blocks' ``ModuleList`` (default: found, see :func:`layer_depths`).
    """
    check_real("decay", decay, low=0.0, high=1.0, low_open=True)
    _, num_layers = _blocks_prefix(model, blocks)

    def label(depth: int) -> str:
        return "embed" if depth == 0 else "head" if depth == num_layers + 1 else f"block{depth - 1}"

    return _grouped(model, label, lambda d: decay ** (num_layers + 1 - d), weight_decay, lr, blocks)


def part_groups(model: Any, lr: float, weight_decay: float = 0.0, blocks: str | None = None) -> list[dict[str, Any]]:
    """Param groups by part: ``embed`` (depth 0), ``body`` (the blocks), ``head`` (final norm and head).

    Each with its ``_no_decay`` twin for 1-D parameters (``weight_decay = 0``); all at ``lr``
    (``"lr_factor"`` 1). Depths as in :func:`layer_depths`; GPT-2 has no ``head`` matrix of its own (its
    ``lm_head`` is the tied embedding), so its head is ``head_no_decay`` (the final LayerNorm) alone.
    Scale parts with :func:`scale_groups`.
    """
    _, num_layers = _blocks_prefix(model, blocks)

    def label(depth: int) -> str:
        return "embed" if depth == 0 else "head" if depth == num_layers + 1 else "body"

    return _grouped(model, label, lambda d: 1.0, weight_decay, lr, blocks)


def scale_groups(groups: list[dict[str, Any]], factors: Mapping[str, float]) -> list[dict[str, Any]]:
    """Multiply the peak LR (``"lr"`` and ``"lr_factor"``) of the named groups, in place; returns ``groups``.

    A name selects the group of that name and its ``_no_decay`` twin (``body`` selects ``body`` and
    ``body_no_decay``; ``body_no_decay`` selects only itself).

    Raises:
        ValueError: a name that selects no group (the message lists the names), or a factor that is
            not a finite number ``>= 0``.
    """
    names = [str(g.get("name")) for g in groups]
    for key, factor in factors.items():
        f = check_real(f"lr factor of {key!r}", factor, low=0.0)
        selected = [g for g in groups if g.get("name") in (key, key + NO_DECAY_SUFFIX)]
        if not selected:
            raise ValueError(f"no param group is named {key!r}; the groups are {names}")
        for group in selected:
            group["lr"] = float(group["lr"]) * f
            group["lr_factor"] = float(group.get("lr_factor", 1.0)) * f
            if not math.isfinite(group["lr"]):
                raise ValueError(f"the LR of group {group['name']!r} is not finite: {group['lr']!r}")
    return groups
