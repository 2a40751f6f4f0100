"""``lrkit align``: the same training twice, with lrkit and with PyTorch's own schedulers.

Each case trains a model twice from the same seed and data, once with
``--scheduler-backend lrkit`` and once with ``--scheduler-backend torch`` (PyTorch's
classes built from the same spec), then compares the two ``metrics.jsonl`` files
step by step. The target is bit-identical losses in float32 (Δ = 0); a case passes
when max |Δloss| <= 1e-5 in fp32 and 1e-2 in bf16 (InfiniTrain's compare_loss
tolerances), and the report always shows the measured Δ.

Multi-rank cases run under ``torchrun`` (gloo on CPU, ``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
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


# ------------------------------------------------------------------------- running


def _command(case: Case, backend: str, run_dir: Path, steps: int, resume: bool) -> list[str]:
    changed = resume and case.resume_spec is not None
    train = [
        "-m", "lrkit.train",
        "--model", case.model,
        "--preset", "tiny",
        "--batch-size", "4",
        "--sequence-length", "64",
        "--num-iterations", str(steps),
        "--lr", "3e-3",
        "--lr-scheduler", json.dumps(case.resume_spec if changed else case.spec),
        "--scheduler-backend", backend,
        "--dtype", case.dtype,
        "--run-dir", str(run_dir),
        "--check-lr-sync",
        "--no-plot",
        "--quiet",
        "--seed", "1234",
        *case.flags,
    ]  # fmt: skip
    if case.resume_at is not None:
        train += ["--save-interval", str(case.resume_at)]
    if resume:
        train += ["--resume", "auto", *case.resume_flags]
    if case.nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={case.nproc}", *train]
    return [sys.executable, *train]


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
        )


def run_case(case: Case, workdir: Path) -> dict[str, Any]:
    """Train ``case`` with both backends and compare; returns the row of the report."""
    from lrkit.train.loop import read_metrics

    t0 = time.perf_counter()
    dirs = {}
    for backend in ("lrkit", "torch"):
        run_dir = workdir / case.name / backend
        dirs[backend] = run_dir
        if case.resume_at is not None and (backend == "lrkit" or case.resume_spec is not None):
            _run(_command(case, backend, run_dir, case.resume_at, resume=False))
            _run(_command(case, backend, run_dir, case.steps, resume=True))
        else:
            _run(_command(case, backend, run_dir, case.steps, resume=False))
    ours = read_metrics(dirs["lrkit"] / "metrics.jsonl")
    theirs = read_metrics(dirs["torch"] / "metrics.jsonl")
    return compare(case, ours, theirs, time.perf_counter() - t0)


def compare(case: Case, ours: list[dict[str, Any]], theirs: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """max |Δloss| and max |Δlr| over matching steps; the verdict against the dtype's tolerance."""
    steps_ok = [r["step"] for r in ours] == [r["step"] for r in theirs] and len(ours) == case.steps
    d_loss = max((abs(a["loss"] - b["loss"]) for a, b in zip(ours, theirs)), default=float("inf"))
    d_lr = max(
        (abs(x - y) for a, b in zip(ours, theirs) for x, y in zip(a["lr"], b["lr"])),
        default=float("inf"),
    )
    lr_sync = all(r.get("lr_ranks_equal", True) for r in ours + theirs)
    ok = steps_ok and lr_sync and d_loss <= TOLERANCE[case.dtype]
    return {
        "case": case.name,
        "layout": f"{case.nproc} rank{'s' if case.nproc > 1 else ''} {' '.join(case.flags)}".strip(),
        "model": case.model,
        "dtype": case.dtype,
        "steps": len(ours),
        "max_dloss": d_loss,
        "max_dlr": d_lr,
        "lr_equal_on_ranks": lr_sync,
        "verdict": "PASS" if ok else "FAIL",
        "seconds": seconds,
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'case':34} {'model':6} {'layout':28} {'dtype':8} {'steps':>5} "
        f"{'max|Δloss|':>11} {'max|Δlr|':>10} {'LR=ranks':>8}  verdict"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['case']:34} {r['model']:6} {r['layout']:28} {r['dtype']:8} {r['steps']:>5} "
            f"{r['max_dloss']:>11.3g} {r['max_dlr']:>10.3g} {str(r['lr_equal_on_ranks']):>8}  {r['verdict']}"
        )
    return "\n".join(lines)


def add_align_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cases", nargs="*", help="case names to run (default: the whole matrix); see --list")
    parser.add_argument("--list", action="store_true", help="list the case names and exit")
    parser.add_argument(
        "--group", default=None, help="only cases of this group: source, classes, llm, layouts, resume, precision"
    )
    parser.add_argument("--source-nproc", type=int, default=8, help="ranks for the 4 source cases (default 8)")
    parser.add_argument("--random", type=int, default=0, metavar="K", help="add K random black-box cases")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random cases")
    parser.add_argument("--workdir", default=None, help="where the runs go (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    parser.add_argument(
        "--layouts",
        action="store_true",
        help="run the parallel-layout matrix instead (make align-layouts): single, DDP8, TP4, TP4+SP, PP8, "
        "PP4+VPP2, TP2+SP+PP2+VPP2, their ZeRO-1 variants and the checkpoint cases, for gpt2 and llama3",
    )


def run_align(args: argparse.Namespace) -> int:
    if args.layouts:
        return _run_layouts(args)
    cases = source_cases(args.source_nproc) + [c for c in all_cases() if c.group != "source"]
    cases += random_cases(args.random, args.seed)
    if args.list:
        for c in cases:
            print(f"{c.name:36} group={c.group:9} model={c.model} nproc={c.nproc} {json.dumps(c.spec)}")
        return 0
    if args.group:
        cases = [c for c in cases if c.group == args.group or (args.random and c.group == "random")]
    if args.cases:
        known = {c.name: c for c in cases}
        unknown = [n for n in args.cases if n not in known]
        if unknown:
            print(f"lrkit align: error: unknown case(s) {unknown}; run 'lrkit align --list'", file=sys.stderr)
            return 2
        cases = [known[n] for n in args.cases]
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="lrkit-align-"))
    runs: list[Run] = [
        (c.name, partial(run_case, c, workdir), {"model": c.model, "layout": str(c.nproc), "dtype": c.dtype})
        for c in cases
    ]
    return _run_matrix(runs, lambda r: f"Δloss={r['max_dloss']:.3g}", format_table, args.json, "")


#: One case of a matrix: its name, what runs it (returns its row), and the columns of its row if it fails.
Run = tuple[str, Callable[[], dict[str, Any]], dict[str, Any]]


def _run_matrix(
    runs: list[Run],
    summary: Callable[[dict[str, Any]], str],
    table: Callable[[list[dict[str, Any]]], str],
    json_path: str | None,
    footer: str,
) -> int:
    """Run every case with a progress line, print the table; 0 when every row passes.

    A case whose training fails is an ERROR row (its third element fills the columns) and the others still run.
    """
    rows = []
    for i, (name, run, failed) in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] {name} ...", end=" ", flush=True)
        try:
            row = run()
        except RuntimeError as err:
            print("ERROR")
            print(str(err), file=sys.stderr)
            inf = float("inf")
            row = {**failed, "case": name, "steps": 0, "max_dloss": inf, "max_dlr": inf, "max_dloss_single": inf,
                   "lr_equal_on_ranks": False, "verdict": "ERROR", "seconds": 0.0}  # fmt: skip
        else:
            print(f"{row['verdict']}  {summary(row)}  ({row['seconds']:.1f} s)", flush=True)
        rows.append(row)
    print()
    print(table(rows))
    passed = sum(r["verdict"] == "PASS" for r in rows)
    print(f"\n{passed} passed, {len(rows) - passed} failed{footer}")
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=2))
    return 0 if passed == len(rows) else 1


def _run_layouts(args: argparse.Namespace) -> int:
    from lrkit.align_layouts import format_layout_table, layout_cases, reference_name, run_layout_case

    cases = layout_cases()
    if args.list:
        for lc in cases:
            print(f"{lc.name:36} nproc={lc.case.nproc} {' '.join(lc.case.flags)}")
        return 0
    if args.cases:
        known = {lc.name: lc for lc in cases}
        unknown = [n for n in args.cases if n not in known]
        if unknown:
            print(f"lrkit align: error: unknown case(s) {unknown}; run 'lrkit align --layouts --list'", file=sys.stderr)
            return 2
        wanted = set(args.cases)
        # The single-process run of each model is the reference for "Δloss vs single": always run it first.
        wanted |= {reference_name(known[n]) for n in args.cases}
        cases = [lc for lc in cases if lc.name in wanted]
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="lrkit-layouts-"))
    single: dict[str, list[dict[str, Any]]] = {}
    runs: list[Run] = [
        (lc.name, partial(run_layout_case, lc, workdir, single), {"model": lc.case.model, "layout": lc.layout})
        for lc in cases
    ]
    return _run_matrix(
        runs,
        lambda r: f"Δloss vs torch={r['max_dloss']:.3g}  vs single={r['max_dloss_single']:.3g}",
        format_layout_table,
        args.json,
        f"; runs in {workdir}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lrkit align", description=__doc__.split("\n\n")[0])
    add_align_arguments(parser)
    return run_align(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
