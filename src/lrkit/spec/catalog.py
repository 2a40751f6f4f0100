"""The catalog: every built-in schedule type, declared once.

Each :class:`~lrkit.spec.registry.SpecType` record says, for one spec ``"type"``: the lrkit class it builds
(whose pure shape is in :mod:`lrkit.schedules`), its PyTorch oracle, its ``--lr-scheduler`` short names and
the flags they read, and its alignment case. :func:`~lrkit.spec.build_scheduler`, the schedule flags,
``lrkit preview`` and ``lrkit align`` read the registry these records fill; nothing else lists the types.

Registration is explicit: :mod:`lrkit.spec` registers :data:`CATALOG`, and
:func:`~lrkit.spec.register` / :func:`~lrkit.spec.register_spec_type` add a user's type beside it.

Adding a schedule: its pure shape in :mod:`lrkit.schedules.shapes`, its class in
:mod:`lrkit.schedulers.llm`, its record here (and, for a new short name, its builder in
:mod:`lrkit.spec.from_flags`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from lrkit.schedulers import greedy, hf, llm, torch_compat
from lrkit.spec import clocked, from_flags, groups
from lrkit.spec.from_flags import WARMUP_FLAGS, CliName
from lrkit.spec.registry import SpecType

__all__ = ["CATALOG"]

_W = WARMUP_FLAGS
#: The alignment cases are 10 updates of 4 sequences x 64 tokens (256 tokens per update).
_STEP = {"type": "StepLR", "step_size": 3, "gamma": 0.5}
_COSINE_10 = {"type": "WarmupCosine", "warmup_steps": 3, "total_steps": 10, "min_lr": 1e-4}


def _random_floor(case: dict[str, Any]) -> Callable[[random.Random], dict[str, Any]]:
    """Random arguments for an LLM schedule: its case's step counts and a random floor in [0, 3e-4]."""

    def make(rng: random.Random) -> dict[str, Any]:
        args = {k: v for k, v in case.items() if k != "type"}
        if "min_lr" in args:
            args["min_lr"] = round(rng.uniform(0.0, 3e-4), 7)
        return args

    return make


def _torch_swalr() -> Any:
    """torch's SWALR lives in ``torch.optim.swa_utils``, not ``torch.optim.lr_scheduler``."""
    from torch.optim.swa_utils import SWALR

    return SWALR


def _torch(name: str, **fields: Any) -> SpecType:
    """A PyTorch-compatible class: torch's class of the same name is its oracle."""
    return SpecType(name, getattr(torch_compat, name), **fields)


def _llm(cls: type[llm.ScheduleLR], case: dict[str, Any] | None, *cli: CliName, rand: bool = False) -> SpecType:
    """An LLM schedule: its oracle is torch's ``LambdaLR`` over the same pure schedule."""
    spec = None if case is None else {"type": cls.__name__, **case}
    return SpecType(
        cls.__name__,
        cls,
        cls.torch_builder,
        cli=cli,
        align_case=spec,
        random_args=_random_floor(spec) if rand and spec is not None else None,
    )


def _hf_name(name: str, flags: set[str], needs_total: bool = False) -> CliName:
    return CliName(f"hf:{name}", from_flags.hf(name), frozenset(flags), needs_total=needs_total)


_WSD_FLAGS = {"min_lr", "decay_steps", "decay_fraction", "decay_shape"}
_WSDS_FLAGS = {"cycle_steps", "num_cycles", "cycle_warmup_steps"}
_POWER_FLAGS = {"power_coefficient", "power_exponent"}
_RESTART_FLAGS = {"min_lr", "cycle_steps", "cycle_mult", "cycle_decay", "cycle_warmup_steps", "num_cycles"}

#: Every built-in spec type. The order of the short names here is the order ``--help`` lists them in.
CATALOG: tuple[SpecType, ...] = (
    # ---------------------------------------------------------------- PyTorch's classes, bit-exact
    _torch("LambdaLR"),
    _torch("MultiplicativeLR"),
    _torch(
        "StepLR",
        cli=(CliName("step", from_flags.step, _W | {"step_size", "gamma"}, aliases=("steplr",)),),
        align_case=_STEP,
        random_args=lambda rng: {"step_size": rng.randint(1, 5), "gamma": round(rng.uniform(0.1, 0.95), 3)},
    ),
    _torch(
        "MultiStepLR",
        cli=(CliName("multistep", from_flags.multistep, _W | {"milestones", "gamma"}),),
        align_case={"type": "MultiStepLR", "milestones": [2, 5, 5, 8], "gamma": 0.5},
        random_args=lambda rng: {
            "milestones": sorted(rng.sample(range(1, 12), 3)),
            "gamma": round(rng.uniform(0.1, 0.9), 3),
        },
    ),
    _torch(
        "ConstantLR",
        align_case={"type": "ConstantLR", "factor": 0.5, "total_iters": 4},
        random_args=lambda rng: {"factor": round(rng.uniform(0.05, 1.0), 3), "total_iters": rng.randint(1, 8)},
    ),
    _torch(
        "LinearLR",
        align_case={"type": "LinearLR", "start_factor": 0.01, "total_iters": 8},
        random_args=lambda rng: {
            "start_factor": round(rng.uniform(0.01, 1.0), 3),
            "end_factor": round(rng.uniform(0.0, 1.0), 3),
            "total_iters": rng.randint(1, 10),
        },
    ),
    _torch(
        "ExponentialLR",
        cli=(CliName("exponential", from_flags.exponential, _W | {"gamma"}),),
        align_case={"type": "ExponentialLR", "gamma": 0.8},
        random_args=lambda rng: {"gamma": round(rng.uniform(0.5, 0.99), 3)},
    ),
    _torch(
        "SequentialLR",
        align_case={
            "type": "SequentialLR",
            "milestones": [4],
            "schedulers": [
                {"type": "LinearLR", "start_factor": 0.25, "total_iters": 4},
                {"type": "CosineAnnealingLR", "T_max": 8, "eta_min": 1e-4},
            ],
        },
    ),
    _torch(
        "PolynomialLR",
        align_case={"type": "PolynomialLR", "total_iters": 8, "power": 2.0},
        random_args=lambda rng: {"total_iters": rng.randint(2, 12), "power": round(rng.uniform(0.5, 3.0), 2)},
    ),
    _torch(
        "CosineAnnealingLR",
        align_case={"type": "CosineAnnealingLR", "T_max": 6, "eta_min": 1e-4},
        random_args=lambda rng: {"T_max": rng.randint(2, 12), "eta_min": round(rng.uniform(0.0, 1e-4), 7)},
    ),
    _torch(
        "ChainedScheduler",
        align_case={
            "type": "ChainedScheduler",
            "schedulers": [_STEP, {"type": "LinearLR", "start_factor": 0.1, "total_iters": 5}],
        },
    ),
    _torch(
        "ReduceLROnPlateau",
        cli=(_hf_name("reduce_lr_on_plateau", {"gamma", "min_lr", "patience"}),),
        align_case={"type": "ReduceLROnPlateau", "patience": 1, "factor": 0.5, "threshold": 0.5},
    ),
    _torch(
        "CyclicLR",
        cli=(CliName("cyclic", from_flags.cyclic, frozenset({"min_lr", "step_size", "gamma", "cyclic_mode"})),),
        align_case={"type": "CyclicLR", "base_lr": 1e-4, "max_lr": 3e-3, "step_size_up": 3},
        random_args=lambda rng: {
            "base_lr": 1e-4,
            "max_lr": round(rng.uniform(1e-3, 5e-3), 5),
            "step_size_up": rng.randint(1, 5),
            "mode": rng.choice(["triangular", "triangular2", "exp_range"]),
            "gamma": 0.9,
        },
    ),
    _torch(
        "CosineAnnealingWarmRestarts",
        align_case={"type": "CosineAnnealingWarmRestarts", "T_0": 3, "T_mult": 2},
        random_args=lambda rng: {"T_0": rng.randint(1, 5), "T_mult": rng.randint(1, 3)},
    ),
    _torch(
        "SWALR",
        torch_builder=lambda optimizer, **args: _torch_swalr()(optimizer, **args),
        align_case={"type": "SWALR", "swa_lr": 3e-4, "anneal_epochs": 5},
        random_args=lambda rng: {
            "swa_lr": round(rng.uniform(1e-4, 1e-3), 6),
            "anneal_epochs": rng.randint(0, 8),
            "anneal_strategy": rng.choice(["cos", "linear"]),
        },
    ),
    _torch(
        "OneCycleLR",
        cli=(
            CliName("onecycle", from_flags.onecycle, _W | {"min_lr", "pct_start", "anneal_strategy"}, needs_total=True),
        ),
        align_case={"type": "OneCycleLR", "max_lr": 3e-3, "total_steps": 12},
        random_args=lambda rng: {
            "max_lr": round(rng.uniform(1e-3, 5e-3), 5),
            "total_steps": rng.randint(10, 20),
            "three_phase": rng.random() < 0.5,
        },
    ),
    # ---------------------------------------------------------------- the LLM schedules
    _llm(
        llm.WarmupConstant,
        {"warmup_steps": 3},
        CliName("constant", from_flags.constant, _W, clockable=True),
    ),
    _llm(
        llm.WarmupLinear,
        {"warmup_steps": 3, "total_steps": 10, "min_lr": 1e-4},
        CliName("linear", from_flags.decay("WarmupLinear"), _W | {"min_lr"}, needs_total=True, clockable=True),
        rand=True,
    ),
    _llm(
        llm.WarmupCosine,
        {k: v for k, v in _COSINE_10.items() if k != "type"},
        CliName("cosine", from_flags.decay("WarmupCosine"), _W | {"min_lr"}, needs_total=True, clockable=True),
        rand=True,
    ),
    _llm(
        llm.WarmupPolynomial,
        {"warmup_steps": 3, "total_steps": 10, "power": 2.0, "min_lr": 1e-4},
        CliName("polynomial", from_flags.polynomial, _W | {"min_lr", "power"}, needs_total=True, clockable=True),
    ),
    _llm(
        llm.WSD,
        {"warmup_steps": 2, "total_steps": 10, "decay_steps": 4, "min_lr": 1e-4},
        CliName("wsd", from_flags.wsd, _W | _WSD_FLAGS, needs_total=True, clockable=True),
        rand=True,
    ),
    _llm(
        llm.WSDS,
        # Two branch points: a decay to step 4 (then a one-step re-warmup) and the last decay to step 10.
        {"cycle_ends": [4, 10], "warmup_steps": 1, "decay_steps": 2, "rewarmup_steps": 1, "min_lr": 1e-4},
        CliName("wsd-s", from_flags.wsd_s, _W | _WSD_FLAGS | _WSDS_FLAGS, needs_total=True, clockable=True),
        rand=True,
    ),
    _llm(
        llm.PowerLR,
        # The cap 3e-3 (the cases' --lr) holds to step 4, then 6e-3 / sqrt(t), then a linear decay from step 7.
        {"coefficient": 6e-3, "exponent": -0.5, "warmup_steps": 2, "total_steps": 10, "decay_steps": 3, "min_lr": 1e-4},
        CliName("power", from_flags.power, _W | _WSD_FLAGS | _POWER_FLAGS, clockable=True),
        rand=True,
    ),
    _llm(
        llm.LogWarmup,
        {"warmup_steps": 5, "warmup_start_lr": 1e-4},
        CliName("log-warmup", from_flags.log_warmup, _W, clockable=True),
    ),
    _llm(
        llm.InverseSqrt,
        {"warmup_steps": 3},
        CliName("inverse-sqrt", from_flags.inverse_sqrt, _W | {"timescale"}, clockable=True),
        rand=True,
    ),
    _llm(
        llm.CosineWithRestarts,
        {"warmup_steps": 1, "cycle_steps": 4, "cycle_decay": 0.8, "min_lr": 1e-4},
        CliName("cosine-restarts", from_flags.cosine_restarts, _W | _RESTART_FLAGS, clockable=True),
    ),
    _llm(llm.PureSchedule, None),
    # ---------------------------------------------------------------- transformers' names
    SpecType(
        "HFSchedule",
        hf.HFSchedule,
        hf.HFSchedule.torch_builder,
        cli=(
            _hf_name("linear", {"warmup_steps"}, needs_total=True),
            _hf_name("cosine", {"warmup_steps", "num_cycles"}, needs_total=True),
            _hf_name("cosine_with_restarts", {"warmup_steps", "num_cycles"}, needs_total=True),
            _hf_name("polynomial", {"warmup_steps", "min_lr", "power"}, needs_total=True),
            _hf_name("constant", set()),
            _hf_name("constant_with_warmup", {"warmup_steps"}),
            _hf_name("inverse_sqrt", {"warmup_steps", "timescale"}),
            _hf_name("cosine_with_min_lr", {"warmup_steps", "min_lr", "num_cycles"}, needs_total=True),
            _hf_name(
                "cosine_warmup_with_min_lr",
                {"warmup_steps", "min_lr", "num_cycles", "warmup_start_lr"},
                needs_total=True,
            ),
            _hf_name("warmup_stable_decay", {"warmup_steps", "warmup_shape", "num_cycles"} | _WSD_FLAGS),
        ),
        align_case={
            "type": "HFSchedule",
            "name": "cosine_with_restarts",
            "num_warmup_steps": 2,
            "num_training_steps": 10,
            "scheduler_specific_kwargs": {"num_cycles": 2},
        },
    ),
    # transformers' metric-driven GreedyLR: its oracle is transformers' own class (torch has none). No alignment
    # case: the torch backend of `lrkit align` would need transformers on the training machines.
    SpecType(
        "GreedyLR",
        greedy.GreedyLR,
        greedy.GreedyLR.torch_builder,
        cli=(_hf_name("greedy", {"gamma", "min_lr", "patience"}),),
    ),
    # ---------------------------------------------------------------- composites of specs
    SpecType(
        "PerGroup",
        groups.PerGroup,
        groups.PerGroup.torch_builder,
        # The trainer's two groups (matrices, then biases and gains), each on its own schedule.
        align_case={
            "type": "PerGroup",
            "schedulers": [
                _COSINE_10,
                {"type": "WSD", "warmup_steps": 0, "total_steps": 10, "decay_steps": 3},
            ],
        },
    ),
    SpecType(
        "Clocked",
        clocked.Clocked,
        clocked.Clocked.torch_builder,
        # Token time: 2560 tokens are the 10 updates, so the warmup ends inside step 3 and the decay at step 10.
        align_case={
            "type": "Clocked",
            "unit": "tokens",
            "schedule": {"type": "WarmupCosine", "warmup_steps": 600, "total_steps": 2560, "min_lr": 1e-4},
        },
    ),
)
