"""The alignment cases: one named schedule, model and layout each (``lrkit align --list``)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from lrkit.spec import spec_record, spec_records

TOLERANCE = {"float32": 1e-5, "bfloat16": 1e-2}


def _case_of(kind: str) -> dict[str, Any]:
    """The catalog's alignment case of spec type ``kind``."""
    case = spec_record(kind).align_case
    assert case is not None, f"the catalog has no alignment case for {kind}"
    return dict(case)


STEP = _case_of("StepLR")
CHAINED = _case_of("ChainedScheduler")


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
COSINE_10 = _case_of("WarmupCosine")
#: WSD-S with two branch points (steps 4 and 10): ``cooldown`` starts a decay in its second stable phase.
WSDS = _case_of("WSDS")
#: Warmup + cosine on the token clock: 2560 tokens are 10 updates of 4 x 64 tokens.
TOKENS_COSINE = _case_of("Clocked")


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
    """One case per registered type that declares one: ``class-<type>`` for PyTorch's own classes (their
    oracle is torch's class of the same name: ``torch.optim.lr_scheduler``'s, or ``swa_utils.SWALR``),
    ``llm-<type>`` for the rest (torch's ``LambdaLR`` over the same pure schedule)."""
    return [
        Case(f"class-{r.name}", dict(r.align_case))
        if r.torch_builder is None or r.cls.__module__ == "lrkit.schedulers.torch_compat"
        else Case(f"llm-{r.name}", dict(r.align_case), group="llm")
        for r in spec_records()
        if r.align_case is not None
    ]


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
        Case(
            "resume-cooldown-wsds",
            WSDS,
            steps=12,
            resume_at=6,
            resume_spec=WSDS,
            resume_flags=["--lr-resume-policy", "cooldown:3"],
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


def random_cases(k: int, seed: int) -> list[Case]:
    """``k`` black-box cases: a random schedule type with random arguments (source doc 004's 3 random tests)."""
    rng = random.Random(seed)
    makers = {r.name: r.random_args for r in spec_records() if r.random_args is not None}
    cases = []
    for i in range(k):
        kind = rng.choice(sorted(makers))
        spec = {"type": kind, **makers[kind](rng)}
        cases.append(Case(f"random{seed}-{i}-{kind}", spec, model=rng.choice(["gpt2", "llama3"]), group="random"))
    return cases
