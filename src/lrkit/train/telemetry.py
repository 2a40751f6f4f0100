"""Per-group norms of one update: the gradient norm and the update ratio ``||Δθ|| / ||θ||``, on every layout.

For param group ``g`` (the optimizer's groups, in the order of the record's ``"lr"``), one update gives

* ``grad_norm_groups[g] = ||∇_g||``: the L2 norm of the group's gradients as the clip sees them (unscaled by
  the fp16 GradScaler, before clipping), so ``sqrt(sum_g grad_norm_groups[g]**2)`` is the record's
  ``grad_norm``;
* ``update_ratio[g] = ||θ_g' - θ_g|| / ||θ_g||``: the norm of the change the optimizer step made to the group's
  parameters over the norm of the parameters before the step (0 for an update the scaler skipped; ``inf``
  for a group whose parameters were all zero and moved, 0 if they did not move);
* ``update_ratio_total``: the same over all groups, ``sqrt(sum_g ||Δθ_g||²) / sqrt(sum_g ||θ_g||²)``.

Every norm is over the whole model, whatever the layout, each element counted once: this rank sums the
squares of its local tensors (a DTensor's local shard, under FSDP2 and tensor parallelism), each divided by
the number of ranks holding a copy of that element, and one all-reduce over all ranks adds them up. A plain
tensor is held by every rank of this rank's model part (every rank under DDP and ZeRO-1, whose owners
broadcast the updated parameters before the norms are taken; the ``dp x tp`` ranks of a pipeline stage); a
DTensor by those ranks divided by the number of its shards. A weight held twice by one rank's stages (the tied
head's copy on the last pipeline stage) counts once: the parameters a layout does not write
(:meth:`~lrkit.train.parallel.ParallelModel.checkpoint_parameters`) are left out.

Cost per update: one copy of this rank's parameters (its local shards) before the step, three norm passes
(``torch.nn.utils.get_total_norm`` of the gradients, the parameters and their difference) and, with more
than one rank, one all-reduce of ``3 x groups`` float64 values (plus, under sequence parallelism, the
reduction of the gradients still partial over the tensor-parallel group). The copy is as large as the model's
parameters on this rank, so the trainer's ``--update-ratio-interval N`` takes the update ratio only on every
``N``-th step (0: never); the other steps cost one norm pass and an all-reduce of ``groups`` values.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist

from lrkit.train.parallel import ParallelModel, is_dtensor, local_tensor

__all__ = ["StepNorms", "group_labels", "DEFAULT_GROUP_NAMES"]

#: The names of nanoGPT's two unnamed groups (:func:`lrkit.train.components.param_groups`), for
#: TensorBoard's tags: matrices decay, biases and norm gains do not.
DEFAULT_GROUP_NAMES = ("decay", "no_decay")


def group_labels(record: dict[str, Any]) -> list[str]:
    """The groups' names in the order of ``record["lr"]``: ``"lr_groups"`` when the groups are named, else
    :data:`DEFAULT_GROUP_NAMES` for nanoGPT's two groups, and the group's index past them."""
    names = record.get("lr_groups")
    if names is not None:
        return [str(n) for n in names]
    count = len(record["lr"])
    return [DEFAULT_GROUP_NAMES[i] if count <= len(DEFAULT_GROUP_NAMES) else str(i) for i in range(count)]


def _copies(tensor: torch.Tensor, holders: int) -> int:
    """How many ranks hold each element of ``tensor``: ``holders`` for a plain tensor; for a DTensor,
    ``holders`` divided by its number of shards (the sizes of the mesh dimensions it is sharded over)."""
    if not is_dtensor(tensor):
        return holders
    dt: Any = tensor
    shards = math.prod(dt.device_mesh.size(i) for i, p in enumerate(dt.placements) if p.is_shard())
    return max(1, holders // shards)


def _squared(tensors: list[torch.Tensor], weights: list[float], device: torch.device) -> torch.Tensor:
    """``sum_i weights[i] * ||tensors[i]||²`` as a float64 scalar: one ``torch.nn.utils.get_total_norm`` (a
    fused kernel) per distinct weight, of which a layout has one or two."""
    squared = torch.zeros((), dtype=torch.float64, device=device)
    by_weight: dict[float, list[torch.Tensor]] = {}
    for tensor, weight in zip(tensors, weights):
        by_weight.setdefault(weight, []).append(tensor)
    for weight, same in by_weight.items():
        squared += weight * torch.nn.utils.get_total_norm(same).double() ** 2
    return squared


class StepNorms:
    """The norms of one update, taken in two halves around ``optimizer.step()``.

    Build it after the gradients are final (synchronised and unscaled) and before clipping: it takes the
    gradients' squared norms and copies the parameters. :meth:`after_step` then takes the change and returns
    the record's fields. Both halves run on every rank (:meth:`after_step` is collective with more than one).
    """

    @torch.no_grad()
    def __init__(self, optimizer: torch.optim.Optimizer, pm: ParallelModel, update_ratio: bool = True) -> None:
        ctx = pm.ctx
        self.device = ctx.device
        self.distributed = ctx.distributed
        holders = ctx.world_size // ctx.pp_size  # the ranks that hold this rank's model part
        counted = {id(p) for _, p, written in pm.checkpoint_parameters() if written}
        self.groups: list[list[torch.Tensor]] = []  # this rank's counted parameters, local shards, by group
        self.weights: list[list[float]] = []  # 1 / the number of ranks holding each element
        grad_squared = []
        for group in optimizer.param_groups:
            params = [p for p in group["params"] if id(p) in counted]
            self.groups.append([local_tensor(p.detach()) for p in params])
            self.weights.append([1.0 / _copies(p, holders) for p in params])
            grads = [_complete(p.grad) for p in params if p.grad is not None]
            weights = [1.0 / _copies(g, holders) for g in grads]
            grad_squared.append(_squared([local_tensor(g) for g in grads], weights, self.device))
        self.grad_squared = grad_squared
        self.update_ratio = update_ratio
        self.before = [[t.clone() for t in tensors] for tensors in self.groups] if update_ratio else []

    @torch.no_grad()
    def after_step(self) -> dict[str, Any]:
        """``{"grad_norm_groups": [...], "update_ratio": [...], "update_ratio_total": x}``, per group in the
        optimizer's order (only ``grad_norm_groups`` when built with ``update_ratio=False``); collective over all
        ranks when distributed."""
        if not self.update_ratio:
            sums = torch.stack(self.grad_squared)
            if self.distributed:
                dist.all_reduce(sums, op=dist.ReduceOp.SUM)
            return {"grad_norm_groups": [math.sqrt(max(g, 0.0)) for g in sums.tolist()]}
        delta_squared, param_squared = [], []
        for tensors, before, weights in zip(self.groups, self.before, self.weights):
            param_squared.append(_squared(before, weights, self.device))
            if before:
                torch._foreach_sub_(before, tensors)  # before - after: the change, negated, in the copy
            delta_squared.append(_squared(before, weights, self.device))
        n = len(self.groups)
        sums = torch.stack([*self.grad_squared, *delta_squared, *param_squared])
        if self.distributed:
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        values = sums.tolist()
        grad, delta, param = values[:n], values[n : 2 * n], values[2 * n :]
        self.before = []
        return {
            "grad_norm_groups": [math.sqrt(max(g, 0.0)) for g in grad],
            "update_ratio": [_ratio(d, p) for d, p in zip(delta, param)],
            "update_ratio_total": _ratio(sum(delta), sum(param)),
        }


def _complete(grad: torch.Tensor) -> torch.Tensor:
    """``grad``, a DTensor gradient still partial over a mesh dimension reduced first (its local tensors are
    addends there, not pieces); a plain gradient as is."""
    if is_dtensor(grad):
        dt: Any = grad
        if any(p.is_partial() for p in dt.placements):
            from torch.distributed.tensor import Replicate

            return dt.redistribute(placements=[Replicate() if p.is_partial() else p for p in dt.placements])
    return grad


def _ratio(delta_squared: float, param_squared: float) -> float:
    """``sqrt(delta_squared / param_squared)``; for zero parameters, 0 if they did not move, else inf."""
    if param_squared > 0:
        return math.sqrt(max(delta_squared, 0.0) / param_squared)
    return 0.0 if delta_squared == 0 else math.inf
