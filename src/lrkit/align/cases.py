"""The alignment cases: one named schedule, model and layout each (``lrkit align --list``)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TOLERANCE = {"float32": 1e-5, "bfloat16": 1e-2}

STEP = {"type": "StepLR", "step_size": 3, "gamma": 0.5}
CHAINED = {
    "type": "ChainedScheduler",
    "schedulers": [STEP, {"type": "LinearLR", "start_factor": 0.1, "total_iters": 5}],
}


def composite(warmup: int, decay: int, start_factor: float = 0.25, gamma: float = 0.95) -> dict[str, Any]:
    """A composite torch can also run: a SequentialLR (LinearLR warmup over ``warmup`` steps, then cosine
    over ``decay`` steps to 1e-4) chained with an ExponentialLR(``gamma``). torch cannot enter a
    ChainedScheduler at a SequentialLR milestone, so the nesting is not the other way round."""
    return {
        "type": "ChainedScheduler",
        "schedulers": [
            {
                "type": "SequentialLR",
                "milestones": [warmup],
                "schedulers": [
                    {"type": "LinearLR", "start_factor": start_factor, "total_iters": warmup},
                    {"type": "CosineAnnealingLR", "T_max": decay, "eta_min": 1e-4},
                ],
            },
            {"type": "ExponentialLR", "gamma": gamma},
        ],
    }


COMPOSITE = composite(4, 8)
#: Pipeline cases: 4 micro-batches (batch 4 x 64 tokens) per update, the pipeline's microbatches.
PP_FLAGS = ["--total-batch-size", str(4 * 4 * 64)]
#: The schedule the ``extend`` and ``cooldown`` resume cases start from.
COSINE_10 = {"type": "WarmupCosine", "warmup_steps": 3, "total_steps": 10, "min_lr": 1e-4}
#: Warmup + cosine on the token clock: 2560 tokens are 10 updates of 4 x 64 tokens.
TOKENS_COSINE: dict[str, Any] = {
    "type": "Clocked",
    "unit": "tokens",
    "schedule": {"type": "WarmupCosine", "warmup_steps": 600, "total_steps": 2560, "min_lr": 1e-4},
}


@dataclass
class Case:
    """One named alignment case: a schedule, a model and a layout."""

    name: str
    spec: dict[str, Any]
    model: str = "gpt2"
    nproc: int = 1
    steps: int = 10
    flags: list[str] = field(default_factory=list)
    dtype: str = "float32"
    resume_at: int | None = None  # the lrkit run is interrupted here and resumed
    group: str = "classes"
    #: With ``resume_at``: both runs are interrupted there and resumed with this schedule and these
    #: flags (``--lr-resume-policy ...``), so torch applies the same schedule change as lrkit.
    resume_spec: dict[str, Any] | None = None
    resume_flags: list[str] = field(default_factory=list)


def _class_cases() -> list[Case]:
    specs: list[tuple[str, dict[str, Any]]] = [
        ("StepLR", STEP),
        ("MultiStepLR", {"type": "MultiStepLR", "milestones": [2, 5, 5, 8], "gamma": 0.5}),
        ("ConstantLR", {"type": "ConstantLR", "factor": 0.5, "total_iters": 4}),
        ("LinearLR", {"type": "LinearLR", "start_factor": 0.01, "total_iters": 8}),
        ("ExponentialLR", {"type": "ExponentialLR", "gamma": 0.8}),
        ("PolynomialLR", {"type": "PolynomialLR", "total_iters": 8, "power": 2.0}),
        ("CosineAnnealingLR", {"type": "CosineAnnealingLR", "T_max": 6, "eta_min": 1e-4}),
        ("CosineAnnealingWarmRestarts", {"type": "CosineAnnealingWarmRestarts", "T_0": 3, "T_mult": 2}),
        ("CyclicLR", {"type": "CyclicLR", "base_lr": 1e-4, "max_lr": 3e-3, "step_size_up": 3}),
        ("OneCycleLR", {"type": "OneCycleLR", "max_lr": 3e-3, "total_steps": 12}),
        ("ReduceLROnPlateau", {"type": "ReduceLROnPlateau", "patience": 1, "factor": 0.5, "threshold": 0.5}),
        ("SequentialLR", COMPOSITE),
        ("ChainedScheduler", CHAINED),
    ]
    cases = [Case(f"class-{name}", spec) for name, spec in specs]
    from lrkit.spec import spec_types

    for name in spec_types():
        llm = _llm_spec(name)
        if llm is not None:
            cases.append(Case(f"llm-{name}", llm, group="llm"))
    return cases


def _llm_spec(name: str) -> dict[str, Any] | None:
    """A small instance of each LLM schedule type, sized for a 10-step run."""
    examples: dict[str, dict[str, Any]] = {
        "WarmupCosine": {"warmup_steps": 3, "total_steps": 10, "min_lr": 1e-4},
        "WarmupLinear": {"warmup_steps": 3, "total_steps": 10, "min_lr": 1e-4},
        "WarmupConstant": {"warmup_steps": 3},
        "WarmupPolynomial": {"warmup_steps": 3, "total_steps": 10, "power": 2.0, "min_lr": 1e-4},
        "WSD": {"warmup_steps": 2, "total_steps": 10, "decay_steps": 4, "min_lr": 1e-4},
        "InverseSqrt": {"warmup_steps": 3},
        "CosineWithRestarts": {"warmup_steps": 1, "cycle_steps": 4, "cycle_decay": 0.8, "min_lr": 1e-4},
        "HFSchedule": {"name": "cosine_with_restarts", "num_warmup_steps": 2, "num_training_steps": 10,
                       "scheduler_specific_kwargs": {"num_cycles": 2}},
        # Token time: 4 x 64 = 256 tokens per update, so the warmup ends inside step 3 and the decay at step 10.
        "Clocked": {k: v for k, v in TOKENS_COSINE.items() if k != "type"},
        # The trainer's two groups (matrices, then biases and gains), each on its own schedule.
        "PerGroup": {"schedulers": [{"type": "WarmupCosine", "warmup_steps": 3, "total_steps": 10, "min_lr": 1e-4},
                                    {"type": "WSD", "warmup_steps": 0, "total_steps": 10, "decay_steps": 3}]},
    }  # fmt: skip
    args = examples.get(name)
    return None if args is None else {"type": name, **args}


def source_cases(nproc: int = 8, steps: int = 10) -> list[Case]:
    """Source document 004's acceptance: {gpt2, llama3} x {StepLR, Chained(StepLR, LinearLR)} under DP."""
    return [
        Case(f"dp{nproc}-{model}-{label}", spec, model=model, nproc=nproc, steps=steps, group="source")
        for model in ("gpt2", "llama3")
        for label, spec in (("StepLR", STEP), ("Chained", CHAINED))
    ]


def all_cases() -> list[Case]:
    """The full matrix of ``make align``."""
    cases = source_cases()
    cases += _class_cases()
    cases += [
        Case("ddp2-zero1-composite", COMPOSITE, nproc=2, flags=["--zero-stage", "1"], group="layouts"),
        Case("fsdp2-composite", COMPOSITE, nproc=2, flags=["--fsdp"], group="layouts"),
        Case("tp2-composite-gpt2", COMPOSITE, nproc=2, flags=["--tensor-parallel", "2"], group="layouts"),
        Case(
            "tp2-sp-composite-llama3",
            COMPOSITE,
            model="llama3",
            nproc=2,
            flags=["--tensor-parallel", "2", "--sequence-parallel"],
            group="layouts",
        ),
        Case(
            "tp2-composite-llama3",
            COMPOSITE,
            model="llama3",
            nproc=2,
            flags=["--tensor-parallel", "2"],
            group="layouts",
        ),
        # Pipeline cases: the update's 4 micro-batches (--total-batch-size 4 x 4 x 64) are the pipeline's.
        Case("pp2-composite-gpt2", COMPOSITE, nproc=2, flags=[*PP_FLAGS, "--pipeline-parallel", "2"], group="layouts"),
        Case(
            "pp2-composite-llama3",
            COMPOSITE,
            model="llama3",
            nproc=2,
            flags=[*PP_FLAGS, "--pipeline-parallel", "2"],
            group="layouts",
        ),
        Case(
            "pp2-vpp2-composite-gpt2",
            COMPOSITE,
            nproc=2,
            flags=[*PP_FLAGS, "--pipeline-parallel", "2", "--virtual-pipeline-parallel", "2"],
            group="layouts",
        ),
        Case("resume-mid-run", COMPOSITE, steps=12, resume_at=6, group="resume"),
        Case("resume-mid-run-ddp2", CHAINED, nproc=2, steps=12, resume_at=5, group="resume"),
        Case(
            "resume-extend",
            COSINE_10,
            steps=14,
            resume_at=6,
            resume_spec={**COSINE_10, "total_steps": 14},
            resume_flags=["--lr-resume-policy", "extend"],
            group="resume",
        ),
        Case(
            "resume-cooldown",
            COSINE_10,
            steps=12,
            resume_at=6,
            resume_spec=COSINE_10,
            resume_flags=["--lr-resume-policy", "cooldown:4"],
            group="resume",
        ),
        # The same two policies on the token clock (lengths in tokens, 256 tokens per update).
        Case(
            "resume-extend-tokens",
            TOKENS_COSINE,
            steps=14,
            resume_at=6,
            resume_spec={**TOKENS_COSINE, "schedule": {**TOKENS_COSINE["schedule"], "total_steps": 3584}},
            resume_flags=["--lr-resume-policy", "extend"],
            group="resume",
        ),
        Case(
            "resume-cooldown-tokens",
            TOKENS_COSINE,
            steps=12,
            resume_at=6,
            resume_spec=TOKENS_COSINE,
            resume_flags=["--lr-resume-policy", "cooldown:4"],
            group="resume",
        ),
        Case("bf16-composite", COMPOSITE, dtype="bfloat16", group="precision"),
    ]
    return cases


def _llm_maker(rng: random.Random, example: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """Random arguments for an LLM schedule: its example's step counts, a random floor."""

    def make() -> dict[str, Any]:
        args = {k: v for k, v in example.items() if k != "type"}
        if "min_lr" in args:
            args["min_lr"] = round(rng.uniform(0.0, 3e-4), 7)
        return args

    return make


def random_cases(k: int, seed: int) -> list[Case]:
    """``k`` black-box cases: a random schedule type with random arguments (source doc 004's 3 random tests)."""
    rng = random.Random(seed)
    makers: dict[str, Callable[[], dict[str, Any]]] = {
        "StepLR": lambda: {"step_size": rng.randint(1, 5), "gamma": round(rng.uniform(0.1, 0.95), 3)},
        "MultiStepLR": lambda: {
            "milestones": sorted(rng.sample(range(1, 12), 3)),
            "gamma": round(rng.uniform(0.1, 0.9), 3),
        },
        "ConstantLR": lambda: {"factor": round(rng.uniform(0.05, 1.0), 3), "total_iters": rng.randint(1, 8)},
        "LinearLR": lambda: {
            "start_factor": round(rng.uniform(0.01, 1.0), 3),
            "end_factor": round(rng.uniform(0.0, 1.0), 3),
            "total_iters": rng.randint(1, 10),
        },
        "ExponentialLR": lambda: {"gamma": round(rng.uniform(0.5, 0.99), 3)},
        "PolynomialLR": lambda: {"total_iters": rng.randint(2, 12), "power": round(rng.uniform(0.5, 3.0), 2)},
        "CosineAnnealingLR": lambda: {"T_max": rng.randint(2, 12), "eta_min": round(rng.uniform(0.0, 1e-4), 7)},
        "CosineAnnealingWarmRestarts": lambda: {"T_0": rng.randint(1, 5), "T_mult": rng.randint(1, 3)},
        "CyclicLR": lambda: {
            "base_lr": 1e-4,
            "max_lr": round(rng.uniform(1e-3, 5e-3), 5),
            "step_size_up": rng.randint(1, 5),
            "mode": rng.choice(["triangular", "triangular2", "exp_range"]),
            "gamma": 0.9,
        },
        "OneCycleLR": lambda: {
            "max_lr": round(rng.uniform(1e-3, 5e-3), 5),
            "total_steps": rng.randint(10, 20),
            "three_phase": rng.random() < 0.5,
        },
    }
    for name in ("WarmupCosine", "WarmupLinear", "WSD", "InverseSqrt"):
        example = _llm_spec(name)
        if example is not None:
            makers[name] = _llm_maker(rng, example)
    cases = []
    for i in range(k):
        kind = rng.choice(sorted(makers))
        spec = {"type": kind, **makers[kind]()}
        cases.append(Case(f"random{seed}-{i}-{kind}", spec, model=rng.choice(["gpt2", "llama3"]), group="random"))
    return cases
