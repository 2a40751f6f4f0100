"""ZeRO-1: two ranks sharing the state of one AdamW take exactly its steps, and its state dict round-trips."""

from __future__ import annotations

import copy
import socket
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lrkit.train.zero import ZeroOptimizer

SHAPES = [(8, 4), (4,), (16, 4), (3,), (4, 4)]
LRS = [1e-2, 5e-3, 2.5e-3, 1e-3]  # a schedule, written into param_groups as lrkit's schedulers do


def _params() -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(shape, generator=gen)) for shape in SHAPES]


def _groups(params: list[torch.nn.Parameter]) -> list[dict[str, Any]]:
    return [{"params": params[::2], "weight_decay": 0.1}, {"params": params[1::2], "weight_decay": 0.0}]


def _step(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], step: int) -> None:
    gen = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    for group in optimizer.param_groups:
        group["lr"] = LRS[step % len(LRS)]
    optimizer.step()


def _worker(rank: int, world: int, port: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        reference_params, params = _params(), _params()
        reference = torch.optim.AdamW(_groups(reference_params), lr=1.0, betas=(0.9, 0.95))
        zero = ZeroOptimizer(_groups(params), optimizer_class=torch.optim.AdamW, lr=1.0, betas=(0.9, 0.95))
        owned = [p for p in params if zero.owns(p)]
        assert 0 < len(owned) < len(params)  # the state really is split
        for step in range(3):
            _step(reference, reference_params, step)
            _step(zero, params, step)
        assert all(torch.equal(p, q) for p, q in zip(params, reference_params))
        assert set(zero.state) == set(owned)

        full = zero.full_state_dict()
        expected = reference.state_dict()
        if rank == 0:
            assert full["param_groups"] == expected["param_groups"]
            assert sorted(full["state"]) == sorted(expected["state"])
            for index, state in expected["state"].items():
                assert all(torch.equal(full["state"][index][k], v) for k, v in state.items())
        else:
            assert full == {}

        # Loading the unsharded state dict into a fresh ZeRO optimizer continues the same trajectory.
        resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
        resumed = ZeroOptimizer(_groups(resumed_params), optimizer_class=torch.optim.AdamW, lr=1.0)
        resumed.load_state_dict(copy.deepcopy(expected))  # state_dict() holds the live tensors
        assert set(resumed.state) == {p for p in resumed_params if resumed.owns(p)}
        for step in range(3, 5):
            _step(reference, reference_params, step)
            _step(resumed, resumed_params, step)
        assert all(torch.equal(p, q) for p, q in zip(resumed_params, reference_params))
        dist.barrier()  # leave together: gloo aborts a rank torn down while its peer is still in a collective
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.distributed
@pytest.mark.slow
def test_zero1_steps_and_state_dict_equal_the_unsharded_optimizer() -> None:
    mp.spawn(_worker, args=(2, _free_port()), nprocs=2)
