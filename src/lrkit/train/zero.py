"""ZeRO-1 (``--zero-stage 1``): the optimizer state sharded by parameter over the data-parallel ranks.

Every data-parallel rank holds the whole model and, after the gradient all-reduce, the whole
averaged gradient; only the optimizer state is split. Each parameter belongs to one rank of
the data-parallel group (greedy by size, in parameter order, so every rank computes the same
assignment): that rank alone keeps its state and updates it, then every owner broadcasts its
updated parameters to the group, one flat buffer per owner and dtype.

Unlike ``torch.distributed.optim.ZeroRedundancyOptimizer`` it takes DTensor parameters (tensor
parallel: a parameter's owner updates its own shard, the broadcast carries local shards, and a
data-parallel group holds one tensor-parallel rank's shards), so ZeRO-1 works in every layout
with data parallelism: DDP, TP x DP, TP + SP, PP x DP and PP x TP x DP.

``param_groups`` lists every parameter of every group, as the unsharded optimizer would, so an
LR scheduler reads and writes ``param_groups[i]["lr"]`` as usual and every rank holds the same
LR; the hyperparameters are copied to the local optimizer before each step. ``state_dict()``
is this rank's share (the state of the parameters it owns, indexed as in the unsharded
optimizer); :meth:`full_state_dict` gathers the unsharded optimizer's state dict, and
``load_state_dict`` takes either and keeps the owned part.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist

from lrkit.train.parallel import full_tensor, local_tensor, optimizer_state_like


class ZeroOptimizer(torch.optim.Optimizer):
    """``optimizer_class`` over this rank's parameters, with the interface of ``optimizer_class`` over all of them.

    ``group`` is the data-parallel process group (``None``: the default group) over which the state is sharded.
    """

    def __init__(
        self,
        params: Iterable[Any],
        optimizer_class: type[torch.optim.Optimizer],
        group: Any = None,
        **defaults: Any,
    ) -> None:
        groups = [dict(g) if isinstance(g, dict) else {"params": [g]} for g in params]
        if groups and not isinstance(groups[0]["params"], list):
            groups = [{**g, "params": list(g["params"])} for g in groups]
        self.group = group
        self.group_rank = dist.get_rank(group)
        self.group_size = dist.get_world_size(group)
        ordered = [p for g in groups for p in g["params"]]
        self.owner = _assign(ordered, self.group_size)
        local_groups = [
            {**g, "params": [p for p in g["params"] if self.owner[id(p)] == self.group_rank]} for g in groups
        ]
        self.local = optimizer_class(local_groups, **defaults)
        super().__init__(groups, self.local.defaults)
        self.state = self.local.state  # one dict: the base state_dict() packs exactly the owned state
        self._index = {id(p): i for i, p in enumerate(ordered)}
        self._owned_index = {i for i, p in enumerate(ordered) if self.owner[id(p)] == self.group_rank}

    def owns(self, param: torch.Tensor) -> bool:
        return self.owner[id(param)] == self.group_rank

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        """Update the owned parameters with the current hyperparameters, then broadcast every owner's."""
        if closure is not None:
            raise ValueError("ZeroOptimizer.step does not take a closure")
        for group, local in zip(self.param_groups, self.local.param_groups):
            for key, value in group.items():
                if key != "params":
                    local[key] = value
        self.local.step()
        self._broadcast()

    def _broadcast(self) -> None:
        buckets: dict[tuple[int, torch.dtype, torch.device], list[torch.Tensor]] = defaultdict(list)
        for group in self.param_groups:
            for p in group["params"]:
                shard = local_tensor(p)  # under no_grad: the parameter's own storage
                buckets[(self.owner[id(p)], shard.dtype, shard.device)].append(shard)
        for (owner, dtype, device), shards in sorted(buckets.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            if self.group_rank == owner:
                flat = torch.cat([s.reshape(-1) for s in shards])
            else:
                flat = torch.empty(sum(s.numel() for s in shards), dtype=dtype, device=device)
            dist.broadcast(flat, group=self.group, group_src=owner)
            if self.group_rank != owner:
                offset = 0
                for s in shards:
                    s.copy_(flat[offset : offset + s.numel()].view_as(s))
                    offset += s.numel()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a full (unsharded) or this rank's state dict; keep the owned parameters' state.

        Plain tensors for DTensor parameters (a full checkpoint) are cut to this rank's shard.
        """
        params = [p for g in self.param_groups for p in g["params"]]
        state = {}
        for index, value in state_dict["state"].items():
            if int(index) in self._owned_index:
                state[index] = optimizer_state_like(value, params[int(index)])
        super().load_state_dict({"state": state, "param_groups": state_dict["param_groups"]})
        self.local.state = self.state  # the base load replaced the dict
        for group, local in zip(self.param_groups, self.local.param_groups):
            local.update({k: v for k, v in group.items() if k != "params"})

    def full_state_dict(self) -> dict[str, Any]:
        """Collective over the group: the unsharded optimizer's state dict (CPU, whole tensors) on its rank 0.

        Returns ``{}`` on the other ranks. DTensor state is gathered over its mesh first, so every rank of a
        tensor-parallel group must call this together.
        """
        own = self.state_dict()
        mine = {index: {k: _cpu_full(v) for k, v in value.items()} for index, value in own["state"].items()}
        gathered: list[Any] | None = [None] * self.group_size if self.group_rank == 0 else None
        dist.gather_object(mine, gathered, group=self.group, group_dst=0)
        if gathered is None:
            return {}
        state: dict[int, Any] = {}
        for part in gathered:
            state.update(part)
        return {"state": dict(sorted(state.items())), "param_groups": own["param_groups"]}


def _assign(params: list[torch.Tensor], n_ranks: int) -> dict[int, int]:
    """Owner of each parameter: the least-loaded rank so far, lowest rank on ties.

    Loads count whole (global) elements, so every tensor-parallel rank computes the same assignment.
    """
    load = [0] * n_ranks
    owner = {}
    for p in params:
        rank = min(range(n_ranks), key=lambda r: (load[r], r))
        owner[id(p)] = rank
        load[rank] += p.numel()
    return owner


def _cpu_full(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return full_tensor(value.detach()).cpu().clone()
    return value
