"""Parallel layouts on torch.distributed: DDP, ZeRO-1, FSDP2 and tensor parallel.

Under ``torchrun`` the process group uses gloo on CPU and NCCL on CUDA. Ranks form
a ``(dp, tp)`` device mesh, rank = ``dp_rank * tp + tp_rank``. The scheduler never
sees any of this: every rank builds the same scheduler from the same spec and
steps it once per optimizer update, so every rank holds the same LR.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistContext:
    """Where this process sits: its rank, the data- and tensor-parallel sizes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    dp_size: int = 1
    dp_rank: int = 0
    tp_size: int = 1
    device: torch.device = torch.device("cpu")
    mesh: Any = None  # DeviceMesh with dims ("dp", "tp") when distributed; ("dp", "pp", "tp") under PP
    pp_size: int = 1
    pp_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_last_rank(self) -> bool:
        """The rank that prints (InfiniTrain convention: the last one)."""
        return self.rank == self.world_size - 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(tensor_parallel: int = 1, device: str = "auto", pipeline_parallel: int = 1) -> DistContext:
    """Initialise torch.distributed when launched by torchrun (``WORLD_SIZE`` set); else a 1-process context.

    With ``pipeline_parallel > 1`` the mesh is ``(dp, pp, tp)``, rank = ``(dp_rank * pp + pp_rank) * tp + tp_rank``;
    otherwise it is the ``(dp, tp)`` mesh as before.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if tensor_parallel < 1 or world_size % tensor_parallel != 0:
        raise ValueError(
            f"--tensor-parallel must divide the number of ranks, got tensor_parallel={tensor_parallel}, "
            f"world_size={world_size}"
        )
    if pipeline_parallel < 1 or world_size % (pipeline_parallel * tensor_parallel) != 0:
        raise ValueError(
            f"--pipeline-parallel x --tensor-parallel must divide the number of ranks, got "
            f"pipeline_parallel={pipeline_parallel}, tensor_parallel={tensor_parallel}, world_size={world_size}"
        )
    if world_size == 1:
        dev = torch.device("cuda" if use_cuda else "cpu")
        return DistContext(device=dev)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    from torch.distributed.device_mesh import init_device_mesh

    if pipeline_parallel > 1:
        dp_size = world_size // (pipeline_parallel * tensor_parallel)
        mesh = init_device_mesh(
            dev.type, (dp_size, pipeline_parallel, tensor_parallel), mesh_dim_names=("dp", "pp", "tp")
        )
        return DistContext(
            rank=rank,
            world_size=world_size,
            local_rank=local_rank,
            dp_size=dp_size,
            dp_rank=rank // (pipeline_parallel * tensor_parallel),
            tp_size=tensor_parallel,
            device=dev,
            mesh=mesh,
            pp_size=pipeline_parallel,
            pp_rank=(rank // tensor_parallel) % pipeline_parallel,
        )
    dp_size = world_size // tensor_parallel
    mesh = init_device_mesh(dev.type, (dp_size, tensor_parallel), mesh_dim_names=("dp", "tp"))
    return DistContext(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        dp_size=dp_size,
        dp_rank=rank // tensor_parallel,
        tp_size=tensor_parallel,
        device=dev,
        mesh=mesh,
    )


def teardown_distributed() -> None:
    """Leave together: a rank that tears gloo down while a peer is still in a collective aborts it."""
    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def _tp_plan(model: nn.Module, sequence_parallel: bool = False) -> list[tuple[nn.Module, dict[str, Any]]]:
    """Megatron-style plan: column-parallel into attention/MLP, row-parallel out of them.

    With ``sequence_parallel`` the residual stream between blocks stays sharded along the
    sequence (``Shard(1)``): the norms run on their sequence shard (``SequenceParallel``),
    each attention/MLP all-gathers its input and reduce-scatters its output, and the
    stream is gathered again before the output head.
    """
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        PrepareModuleInput,
        RowwiseParallel,
        SequenceParallel,
    )

    name = type(model).__name__
    if name == "GPT2":
        blocks: Any = model.transformer.h  # type: ignore[union-attr]
        attn, mlp, norms = "attn", "mlp", ("ln_1", "ln_2")
        attn_in, attn_out = ("attn.c_q", "attn.c_k", "attn.c_v"), "attn.c_proj"
        mlp_in: tuple[str, ...] = ("mlp.c_fc",)
        mlp_out = "mlp.c_proj"
        extra_inputs: tuple[None, ...] = ()
        final_norm, head = "transformer.ln_f", "lm_head"
    elif name == "Llama3":
        blocks = model.layers  # type: ignore[union-attr]
        attn, mlp, norms = "attention", "feed_forward", ("attention_norm", "ffn_norm")
        attn_in, attn_out = ("attention.wq", "attention.wk", "attention.wv"), "attention.wo"
        mlp_in, mlp_out = ("feed_forward.w1", "feed_forward.w3"), "feed_forward.w2"
        extra_inputs = (None, None)  # RoPE cos and sin, plain tensors
        final_norm, head = "norm", "output"
    else:
        raise ValueError(f"no tensor-parallel plan for model {name}")
    out = Shard(1) if sequence_parallel else None
    plan: dict[str, Any] = {}
    for layer in (*attn_in, *mlp_in):
        plan[layer] = ColwiseParallel()
    for layer in (attn_out, mlp_out):
        plan[layer] = RowwiseParallel(output_layouts=out, use_local_output=not sequence_parallel)
    if sequence_parallel:
        for norm in norms:
            plan[norm] = SequenceParallel()
        plan[attn] = PrepareModuleInput(
            input_layouts=(Shard(1), *extra_inputs),
            desired_input_layouts=(Replicate(), *extra_inputs),
            use_local_output=True,
        )
        plan[mlp] = PrepareModuleInput(
            input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),), use_local_output=True
        )
    plans: list[tuple[nn.Module, dict[str, Any]]] = [(block, dict(plan)) for block in blocks]
    if sequence_parallel:
        root = {
            # Enter the residual stream sharded along the sequence; leave it gathered for the head.
            _first_block(name): PrepareModuleInput(
                input_layouts=(Replicate(), *extra_inputs),
                desired_input_layouts=(Shard(1), *extra_inputs),
                use_local_output=False,
            ),
            final_norm: SequenceParallel(),
            head: PrepareModuleInput(
                input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),), use_local_output=True
            ),
        }
        plans.append((model, root))
    return plans


def _first_block(model_name: str) -> str:
    return "transformer.h.0" if model_name == "GPT2" else "layers.0"


def check_tp_divisibility(model: nn.Module, tp: int) -> None:
    cfg: Any = model.config
    heads = [("n_head", cfg.n_head)]
    if hasattr(cfg, "n_kv_head"):
        heads.append(("n_kv_head", cfg.n_kv_head))
    for field, value in heads:
        if value % tp != 0:
            raise ValueError(f"--tensor-parallel {tp} must divide the model's {field}={value}")


@dataclass
class ParallelModel:
    """The model as wrapped for the layout, plus the hooks the training loop needs."""

    module: nn.Module  # what forward() is called on (DDP/FSDP wrapper or the model)
    raw: nn.Module  # the underlying model (state dict, config)
    ctx: DistContext
    layout: str
    sharded_state: bool  # FSDP/TP: parameters are DTensors, use the DCP state-dict API
    _sync_grads: Callable[[], None] | None = None

    def no_sync(self, last_micro_step: bool) -> AbstractContextManager[Any]:
        """Skip DDP's gradient all-reduce on all but the last micro-step of an accumulation."""
        if not last_micro_step and isinstance(self.module, nn.parallel.DistributedDataParallel):
            return self.module.no_sync()
        return nullcontext()

    def sync_grads(self) -> None:
        """Average gradients over data-parallel ranks where no wrapper does it (TP with DP > 1)."""
        if self._sync_grads is not None:
            self._sync_grads()

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.raw.parameters()


def wrap_model(
    model: nn.Module, ctx: DistContext, fsdp: bool = False, sequence_parallel: bool = False
) -> ParallelModel:
    """Apply TP (``ctx.tp_size > 1``, with ``sequence_parallel``), then FSDP2 (``fsdp``) or DDP (``dp_size > 1``)."""
    model.to(ctx.device)
    layout = "single"
    sync: Callable[[], None] | None = None
    module: nn.Module = model
    if ctx.tp_size > 1:
        from torch.distributed.tensor.parallel import parallelize_module

        check_tp_divisibility(model, ctx.tp_size)
        for target, plan in _tp_plan(model, sequence_parallel):
            parallelize_module(target, ctx.mesh["tp"], plan)
        layout = f"TP{ctx.tp_size}" + ("+SP" if sequence_parallel else "")
    elif sequence_parallel:
        raise ValueError("--sequence-parallel needs --tensor-parallel > 1")
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        if not ctx.distributed:
            raise ValueError("--fsdp needs more than one rank (launch with torchrun)")
        dp_mesh = ctx.mesh["dp"]
        blocks = model.transformer.h if hasattr(model, "transformer") else model.layers  # type: ignore[union-attr]
        for block in blocks:  # type: ignore[union-attr]
            fully_shard(block, mesh=dp_mesh)
        fully_shard(model, mesh=dp_mesh)
        layout = "FSDP2" if ctx.tp_size == 1 else f"FSDP2+{layout}"
    elif ctx.dp_size > 1 and ctx.tp_size == 1:
        module = nn.parallel.DistributedDataParallel(model)
        layout = "DDP"
    elif ctx.dp_size > 1:
        dp_group = ctx.mesh["dp"].get_group()
        params = [p for p in model.parameters() if p.requires_grad]

        def _average() -> None:
            for p in params:
                if p.grad is None:
                    continue
                local = p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad
                dist.all_reduce(local, op=dist.ReduceOp.SUM, group=dp_group)
                local.div_(ctx.dp_size)

        sync = _average
        layout = f"DP{ctx.dp_size}+{layout}"
    sharded = ctx.tp_size > 1 or fsdp
    return ParallelModel(module=module, raw=model, ctx=ctx, layout=layout, sharded_state=sharded, _sync_grads=sync)


def all_reduce_mean(value: float, ctx: DistContext) -> float:
    """Average a Python float over all ranks (float64 so the sum is exact enough to log)."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / ctx.world_size


def all_gather_floats(values: list[float], ctx: DistContext) -> list[list[float]]:
    """Every rank's ``values`` (used to check that all ranks hold the same LR)."""
    if not ctx.distributed:
        return [values]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, values)
    return out


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> float:
    """Global L2 grad norm over all ranks' shards, clipped to ``max_norm`` when ``max_norm > 0``.

    With plain tensors only this is ``torch.nn.utils.clip_grad_norm_``. Under tensor
    parallelism some grads are DTensors (sharded) and some plain (replicated layers),
    which torch's foreach kernels refuse to mix, so the two norms are combined here:
    ``total = sqrt(|plain|^2 + |dtensor|^2)``.
    """
    grads = [p.grad for p in params if p.grad is not None]
    distributed = [g for g in grads if hasattr(g, "full_tensor")]
    if not distributed:
        if max_norm > 0:
            return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        return float(torch.nn.utils.get_total_norm(grads))
    plain = [g for g in grads if not hasattr(g, "full_tensor")]
    squared = 0.0
    if plain:
        squared += float(torch.nn.utils.get_total_norm(plain)) ** 2
    norm: Any = torch.nn.utils.get_total_norm(distributed)
    squared += float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm) ** 2
    total = squared**0.5
    if max_norm > 0:
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            for g in grads:
                g.mul_(coef)
    return total
