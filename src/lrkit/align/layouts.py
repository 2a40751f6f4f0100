"""``lrkit align --layouts`` (``make align-layouts``): the InfiniTrain scenario matrix, every parallel layout.

Each case trains the same model (8 blocks, 4 heads; LLaMA-3 with 4 key/value heads, so
that TP4 and PP8 both fit) on the same global batch (16 sequences x 32 tokens per
update) with a composite schedule, twice: ``--scheduler-backend lrkit`` and
``--scheduler-backend torch``. It reports, per case:

* **Δloss vs torch**: max |loss_lrkit - loss_torch| over the steps. The goal is 0 (bit
  identical): the layout is the same on both sides, only the scheduler differs.
* **Δloss vs single**: max |loss_layout - loss_single| against the single-process run of
  the same model (lrkit backend). Layouts reorder floating-point sums (all-reduce,
  sharded matmuls, pipeline micro-batches), so this is small but not required to be 0.
* **LR = ranks**: every rank held the same LR at every step (``--check-lr-sync``).

The checkpoint cases follow InfiniTrain's: a 50-step run saves every 10 steps; a second
run resumes from the step-30 checkpoint and must reproduce steps 31-50 exactly (Δ = 0
against the uninterrupted run, shown as "Δresume"), with both backends.

Every case runs under ``torchrun`` with gloo and ``OMP_NUM_THREADS=1`` (8 ranks on this
2-core machine is slow but fine for tiny models).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrkit.align.cases import Case, composite
from lrkit.align.runner import compare, run_command, train_command

#: The model every layout case trains: 8 blocks (PP8, PP4 x VPP2), 4 heads (TP4), 4 KV heads for LLaMA-3.
SHAPE = ["--n-layer", "8", "--n-head", "4"]
LLAMA_SHAPE = ["--n-kv-head", "4"]
#: 16 sequences of 32 tokens per update. Each layout splits them into as few micro-batches as it can
#: (the pipeline needs at least one per stage rank): the update sees the same 16 sequences in every layout.
SEQUENCES, SEQ_LEN = 16, 32


def _batch(micro_batch: int) -> list[str]:
    return ["--batch-size", str(micro_batch), "--sequence-length", str(SEQ_LEN),
            "--total-batch-size", str(SEQUENCES * SEQ_LEN)]  # fmt: skip


#: Warmup (LinearLR) then cosine, chained with an exponential decay: 10 steps, and 50 for the checkpoint cases.
COMPOSITE_10 = composite(3, 7)
COMPOSITE_50 = composite(10, 40, start_factor=0.1, gamma=0.99)

#: (name, ranks, micro-batch size, layout flags): InfiniTrain's scenarios at 8 ranks, and the single process.
LAYOUTS: list[tuple[str, int, int, list[str]]] = [
    ("single", 1, 16, []),
    ("ddp8", 8, 2, []),
    ("tp4-dp2", 8, 8, ["--tensor-parallel", "4"]),
    ("tp4-sp-dp2", 8, 8, ["--tensor-parallel", "4", "--sequence-parallel"]),
    ("pp8", 8, 2, ["--pipeline-parallel", "8"]),
    ("pp4-vpp2-dp2", 8, 2, ["--pipeline-parallel", "4", "--virtual-pipeline-parallel", "2"]),
    (
        "tp2-sp-pp2-vpp2-dp2",
        8,
        4,
        [
            "--tensor-parallel",
            "2",
            "--sequence-parallel",
            "--pipeline-parallel",
            "2",
            "--virtual-pipeline-parallel",
            "2",
        ],
    ),  # fmt: skip
]
#: The layouts with data parallelism (DP > 1) also run with ZeRO-1.
ZERO1 = ("ddp8", "tp4-dp2", "tp4-sp-dp2", "pp4-vpp2-dp2", "tp2-sp-pp2-vpp2-dp2")
#: The checkpoint scenario: run 50 steps saving every 10, resume from step 30.
CHECKPOINT_LAYOUTS = ("single", "tp2-sp-pp2-vpp2-dp2")
CKPT_STEPS, CKPT_EVERY, CKPT_FROM = 50, 10, 30
MODELS = ("gpt2", "llama3")


@dataclass
class LayoutCase:
    """One scenario: a layout, a model, and (checkpoint cases) the resume point."""

    name: str
    layout: str
    case: Case
    resume_from: int | None = None


def layout_cases(models: tuple[str, ...] = MODELS) -> list[LayoutCase]:
    """The matrix: every layout (and its ZeRO-1 variant) for each model, then the checkpoint cases."""
    flags_of = {name: (nproc, [*_batch(micro), *flags]) for name, nproc, micro, flags in LAYOUTS}
    out: list[LayoutCase] = []
    for model in models:
        shape = SHAPE + (LLAMA_SHAPE if model == "llama3" else [])
        for name, (nproc, flags) in flags_of.items():
            variants = [(name, flags)]
            if name in ZERO1:
                variants.append((f"{name}-zero1", [*flags, "--zero-stage", "1"]))
            for label, fl in variants:
                case = Case(f"{model}-{label}", COMPOSITE_10, model=model, nproc=nproc,
                            flags=[*shape, *fl], group="matrix")  # fmt: skip
                out.append(LayoutCase(case.name, label, case))
        for name in CHECKPOINT_LAYOUTS:
            nproc, fl = flags_of[name]
            case = Case(f"{model}-ckpt-{name}", COMPOSITE_50, model=model, nproc=nproc, steps=CKPT_STEPS,
                        flags=[*shape, *fl], group="matrix")  # fmt: skip
            out.append(LayoutCase(case.name, f"ckpt {name}", case, resume_from=CKPT_FROM))
    return out


def _train(lc: LayoutCase, backend: str, run_dir: Path) -> tuple[list[dict[str, Any]], float | None]:
    """Train one backend; checkpoint cases also resume from ``resume_from``. Returns metrics and Δresume."""
    from lrkit.train.checkpoint import find_checkpoint
    from lrkit.train.metrics import read_metrics

    case = lc.case
    if lc.resume_from is None:
        run_command(train_command(case, backend, run_dir, case.steps, resume=False))
        return read_metrics(run_dir / "metrics.jsonl"), None
    straight_cmd = train_command(case, backend, run_dir, case.steps, resume=False)
    straight_cmd += ["--save-interval", str(CKPT_EVERY), "--keep-last", str(case.steps // CKPT_EVERY)]
    run_command(straight_cmd)
    straight = read_metrics(run_dir / "metrics.jsonl")
    shutil.copy(run_dir / "metrics.jsonl", run_dir / "metrics.straight.jsonl")
    resume_cmd = train_command(case, backend, run_dir, case.steps, resume=False, fresh=False)
    start = find_checkpoint(run_dir, lc.resume_from)  # a file in one process, a sharded directory under torchrun
    if start is None:
        return straight, float("inf")
    resume_cmd += ["--resume", str(start)]
    run_command(resume_cmd)
    resumed = read_metrics(run_dir / "metrics.jsonl")
    if [r["step"] for r in resumed] != [r["step"] for r in straight]:
        return resumed, float("inf")
    d = max(
        max(abs(a["loss"] - b["loss"]), *(abs(x - y) for x, y in zip(a["lr"], b["lr"])))
        for a, b in zip(resumed, straight)
    )
    return resumed, d


def reference_name(lc: LayoutCase) -> str:
    """The single-process case this one is compared with: same model, same schedule and length."""
    return f"{lc.case.model}-{'ckpt-' if lc.resume_from is not None else ''}single"


def run_layout_case(lc: LayoutCase, workdir: Path, single: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Both backends, compared with each other and with the single-process run (``single``, by case name;
    a single-process case adds itself there)."""
    t0 = time.perf_counter()
    metrics, d_resume = {}, {}
    for backend in ("lrkit", "torch"):
        metrics[backend], d_resume[backend] = _train(lc, backend, workdir / lc.name / backend)
    row = compare(lc.case, metrics["lrkit"], metrics["torch"], time.perf_counter() - t0)
    row["layout"] = lc.layout
    key = reference_name(lc)
    if lc.name == key:
        single[key] = metrics["lrkit"]
    reference = single.get(key)
    row["max_dloss_single"] = (
        max((abs(a["loss"] - b["loss"]) for a, b in zip(metrics["lrkit"], reference)), default=float("inf"))
        if reference is not None
        else float("nan")
    )
    if lc.resume_from is not None:
        worst = max(d for d in d_resume.values() if d is not None)
        row["max_dresume"] = worst
        if worst != 0.0:
            row["verdict"] = "FAIL"
    return row


def format_layout_table(rows: list[dict[str, Any]]) -> str:
    """One table per model: layout, Δloss vs torch, Δloss vs single, Δresume, LR = ranks, verdict."""
    header = (
        f"{'layout':28} {'steps':>5} {'Δloss vs torch':>14} {'Δlr vs torch':>12} {'Δloss vs single':>15} "
        f"{'Δresume':>8} {'LR=ranks':>8}  verdict"
    )
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        out += [f"model: {model}", header, "-" * len(header)]
        for r in (r for r in rows if r["model"] == model):
            resume = f"{r['max_dresume']:.3g}" if "max_dresume" in r else "-"
            out.append(
                f"{r['layout']:28} {r['steps']:>5} {r['max_dloss']:>14.3g} {r['max_dlr']:>12.3g} "
                f"{r['max_dloss_single']:>15.3g} {resume:>8} {str(r['lr_equal_on_ranks']):>8}  {r['verdict']}"
            )
        out.append("")
    return "\n".join(out)
