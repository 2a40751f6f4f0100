"""The trainer's components, built from the config: the model, its optimizer, the evaluation, and the state
protocol of each stateful part (``state_dict()`` / ``load_state_dict()``), so a checkpoint is a dict of them."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

from lrkit.train import checkpoint as ckpt
from lrkit.train import optim as train_optim
from lrkit.train.config import ModelConfig, TrainConfig
from lrkit.train.data import TokenLoader
from lrkit.train.errors import TrainError
from lrkit.train.models import build_model
from lrkit.train.parallel import DistContext, ParallelModel, all_reduce_mean, is_dtensor, wrap_model
from lrkit.train.pipeline import build_pipeline, check_pipeline_args
from lrkit.train.sharded import load_model, load_optimizer
from lrkit.train.zero import ZeroOptimizer

__all__ = [
    "ModelState",
    "OptimizerState",
    "RNGState",
    "build_optimizer",
    "build_train_model",
    "check_fits",
    "evaluate",
    "model_overrides",
    "optimizer_impl_kwargs",
    "optimizer_step",
    "parallelize",
    "param_groups",
]


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups, as in nanoGPT: matrices decay; biases, norms and gains do not."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(config: TrainConfig, pm: ParallelModel) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD over two param groups (or the named ones); ZeRO-1 shards its state."""
    opt, lr_value, compile_ = config.optimizer, float(config.schedule.lr), config.model.compile
    lr: float | torch.Tensor = lr_value
    if compile_:
        lr = torch.tensor(lr_value)  # a tensor LR changes without recompiling the step
    groups = train_optim.named_groups(config, pm.raw) or param_groups(pm.raw, opt.weight_decay)
    cls: type[torch.optim.Optimizer]
    kwargs: dict[str, Any] = {"lr": lr}
    if opt.name in ("adamw", "adam"):
        cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
        kwargs["betas"] = (opt.beta1, opt.beta2)
    else:
        cls = torch.optim.SGD
        kwargs["momentum"] = opt.momentum
    dtensor_params = any(is_dtensor(p) for p in pm.raw.parameters())
    kwargs.update(optimizer_impl_kwargs(config, dtensor_params=dtensor_params))
    if opt.zero_stage == 1:
        if not pm.ctx.distributed:
            raise TrainError("--zero-stage 1 needs more than one rank (launch with torchrun)")
        if config.parallel.fsdp:
            raise TrainError("--zero-stage 1 cannot be combined with --fsdp (FSDP2 already shards the optimizer state)")
        return ZeroOptimizer(groups, optimizer_class=cls, group=pm.ctx.mesh["dp"].get_group(), **kwargs)
    if compile_:
        for group in groups:
            group["lr"] = torch.tensor(float(group.get("lr", lr_value)))
    return cls(groups, **kwargs)


def optimizer_impl_kwargs(config: TrainConfig, dtensor_params: bool = False) -> dict[str, bool]:
    """``--optimizer-impl`` as the optimizer's ``fused`` / ``foreach`` arguments (``{}``: torch's default).

    ``auto`` picks the fused kernel for AdamW and Adam over plain tensors. It leaves torch's default
    under ``--compile`` (the compiled step is traced from it) and for DTensor parameters
    (``dtensor_params``: tensor parallel, FSDP2), which torch's fused kernels do not take.
    """
    config = TrainConfig.of(config)
    opt, compile_ = config.optimizer, config.model.compile
    impl = opt.implementation
    if impl == "auto":
        fused = opt.name in ("adamw", "adam") and not compile_ and not dtensor_params
        return {"fused": True} if fused else {}
    if impl == "fused":
        if dtensor_params:
            raise TrainError(
                "--optimizer-impl fused does not work with DTensor parameters (--tensor-parallel > 1 or --fsdp): "
                "torch's fused kernels take plain tensors only; use auto or foreach"
            )
        return {"fused": True}
    return {"foreach": impl == "foreach"}


def model_overrides(model: ModelConfig) -> dict[str, Any]:
    """The model-config fields the config replaces in the preset (``--dropout``, ``--n-layer``, ...)."""
    overrides: dict[str, Any] = {}
    if model.name == "gpt2" and model.dropout:
        overrides["dropout"] = model.dropout
    for name in ("n_layer", "n_head", "n_kv_head"):
        value = getattr(model, name)
        if value is None:
            continue
        if name == "n_kv_head" and model.name != "llama3":
            raise TrainError(f"--n-kv-head applies to --model llama3 only, got --model {model.name}")
        overrides[name] = value
    return overrides


def build_train_model(model: ModelConfig) -> Any:
    """The model the config describes; a preset or shape the model refuses is a :class:`TrainError`."""
    overrides = model_overrides(model)
    try:
        return build_model(model.name, model.preset, **overrides)
    except ValueError as err:  # the model's own argument checks: the flags chose those arguments
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in overrides.items())
        raise TrainError(f"--model {model.name} --preset {model.preset} {flags}".rstrip() + f": {err}") from err


def check_fits(model: Any, config: ModelConfig, sequence_length: int, tokens: Any) -> None:
    """The data fits the model: sequences within its context, token ids within its vocabulary."""
    if sequence_length > model.config.block_size:
        raise TrainError(
            f"--sequence-length {sequence_length} is longer than the model's context "
            f"(block_size={model.config.block_size} for {config.name}/{config.preset})"
        )
    if int(tokens.max()) >= model.config.vocab_size:
        raise TrainError(f"data has token id {int(tokens.max())} >= the model's vocab_size={model.config.vocab_size}")


def parallelize(model: Any, config: TrainConfig, ctx: DistContext, grad_accum: int) -> ParallelModel:
    """The model under the config's layout: pipeline stages (with their TP plan), or DDP / FSDP2 / TP / SP."""
    parallel, sequence_length = config.parallel, config.batch.sequence_length
    if parallel.sequence_parallel and sequence_length % ctx.tp_size:
        raise TrainError(
            f"--sequence-length {sequence_length} must be divisible by --tensor-parallel {ctx.tp_size} "
            "under --sequence-parallel"
        )
    pm: ParallelModel
    if ctx.pp_size > 1:
        check_pipeline_args(config, ctx, grad_accum, model.config.n_layer)
        pm = build_pipeline(model, ctx, config, n_microbatches=grad_accum)
    else:
        if parallel.virtual_pipeline_parallel != 1 or parallel.pipeline_schedule is not None:
            raise TrainError("--virtual-pipeline-parallel and --pipeline-schedule need --pipeline-parallel > 1")
        pm = wrap_model(model, ctx, fsdp=parallel.fsdp, sequence_parallel=parallel.sequence_parallel)
    if config.model.compile:
        pm.module = torch.compile(pm.module)  # type: ignore[assignment]
    return pm


def optimizer_step(
    config: TrainConfig, pm: ParallelModel, optimizer: torch.optim.Optimizer, hparams: list[Any]
) -> Callable[[], Any]:
    """The update: ``optimizer.step``, compiled under ``--compile`` where that is safe.

    PyTorch's "compiling the optimizer" recipe: the LRs are tensors that the schedule, outside the compiled
    region, fills in place, so a new LR is a new input value, not a new graph. The scaler's, ZeRO-1's and
    DTensor steps stay eager, and so does a step with scheduled hyperparameters (Python floats in the groups,
    which would recompile it).
    """
    eager = config.model.dtype == "float16" or config.optimizer.zero_stage != 0 or pm.sharded_state or hparams
    if config.model.compile and not eager:
        return torch.compile(optimizer.step)  # type: ignore[return-value]
    return optimizer.step


@torch.no_grad()
def evaluate(
    pm: ParallelModel, val_tokens: Any, config: TrainConfig, ctx: DistContext, autocast_dtype: Any
) -> tuple[float, float]:
    """The mean validation loss over ``--eval-iters`` micro-batches per data-parallel rank, from the start of the
    split (deterministic), and its standard error.

    With ``n = eval_iters * dp_size`` micro-batch losses ``l_i`` (each the mean over ``B * T`` tokens), the mean is
    ``m = sum(l_i) / n`` and the standard error ``sqrt((mean(l_i^2) - m^2) / (n - 1))``: the noise of ``m`` as an
    estimate of the loss over all the text the split was drawn from (0 when ``n = 1``). Units: nats per token.
    """
    batch, eval_iters = config.batch, config.logging.eval_iters
    loader = TokenLoader(val_tokens, batch.batch_size, batch.sequence_length, rank=ctx.dp_rank, world_size=ctx.dp_size)
    pm.module.eval()
    total = squares = 0.0
    for _ in range(eval_iters):
        x, y = loader.next_batch()
        amp = torch.autocast(ctx.device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
        with amp:
            _, loss = pm.module(x.to(ctx.device), y.to(ctx.device))
        assert loss is not None
        total += float(loss)
        squares += float(loss) ** 2
    pm.module.train()
    mean = all_reduce_mean(total / eval_iters, ctx)
    mean_square = all_reduce_mean(squares / eval_iters, ctx)
    n = eval_iters * ctx.dp_size
    stderr = math.sqrt(max(mean_square - mean * mean, 0.0) / (n - 1)) if n > 1 else 0.0
    return mean, stderr


# --------------------------------------------------------------------------- the state protocol


class ModelState:
    """The model under its layout. ``state_dict()`` is the full (unsharded) state dict of the full checkpoint
    format; ``load_state_dict()`` also takes a sharded checkpoint's tensors (:class:`~lrkit.train.checkpoint.
    ShardedState`), read into this layout. ``process_group``: the group sharded loads run over."""

    def __init__(self, pm: ParallelModel, process_group: Any = None) -> None:
        self.pm, self.process_group = pm, process_group

    def state_dict(self) -> dict[str, Any]:
        """Collective: every rank takes part."""
        return self.pm.model_state_dict()

    def load_state_dict(self, state: dict[str, Any] | ckpt.ShardedState) -> None:
        if isinstance(state, ckpt.ShardedState):
            load_model(self.pm, state, self.process_group)
        else:
            self.pm.load_model_state_dict(state)


class OptimizerState:
    """The optimizer under the model's layout (ZeRO-1, FSDP2, TP and pipeline stages hold shards of it);
    full state dicts, or a sharded checkpoint's tensors on load, as :class:`ModelState`."""

    def __init__(self, pm: ParallelModel, optimizer: torch.optim.Optimizer, process_group: Any = None) -> None:
        self.pm, self.optimizer, self.process_group = pm, optimizer, process_group

    def state_dict(self) -> dict[str, Any]:
        """Collective: every rank takes part."""
        return self.pm.optimizer_state_dict(self.optimizer)

    def load_state_dict(self, state: dict[str, Any] | ckpt.ShardedState) -> None:
        if isinstance(state, ckpt.ShardedState):
            load_optimizer(self.pm, self.optimizer, state, self.process_group)
        else:
            self.pm.load_optimizer_state_dict(self.optimizer, state)


class RNGState:
    """Every rank's random generators (Python, numpy, torch CPU and CUDA), one entry per rank."""

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx

    def state_dict(self) -> list[Any]:
        """Collective: every rank's state, in rank order."""
        state = ckpt.capture_rng_state()
        if not self.ctx.distributed:
            return [state]
        import torch.distributed as dist

        out: list[Any] = [None] * self.ctx.world_size
        dist.all_gather_object(out, state)
        return out

    def load_state_dict(self, states: list[Any]) -> None:
        """Rank ``r`` takes the saved rank ``r``'s generators; on another world size, those of saved rank
        ``r mod n`` (n ranks saved). Dropout then draws other masks than an unchanged layout would."""
        ckpt.restore_rng_state(states[self.ctx.rank % len(states)])
