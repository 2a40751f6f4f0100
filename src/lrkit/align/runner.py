"""Run one alignment case: the same training twice, with lrkit and with PyTorch's own schedulers.

Each case trains a model twice from the same seed and data, once with
``--scheduler-backend lrkit`` and once with ``--scheduler-backend torch`` (PyTorch's
classes built from the same spec), then compares the two ``metrics.jsonl`` files
step by step. The target is bit-identical losses in float32 (Δ = 0); a case passes
when max |Δloss| <= 1e-5 in fp32 and 1e-2 in bf16 (InfiniTrain's compare_loss
tolerances), and the report always shows the measured Δ.

Multi-rank cases run under ``torchrun`` (gloo on CPU, ``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lrkit.align.cases import TOLERANCE, Case


def train_command(
    case: Case, backend: str, run_dir: Path, steps: int, resume: bool, fresh: bool | None = None
) -> list[str]:
    """The ``lrkit train`` command of one case's run. ``fresh`` (default: ``not resume``) adds ``--overwrite``, so
    a rerun of ``lrkit align`` in the same work dir starts over; the trainer moves the old run aside."""
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
    if (not resume) if fresh is None else fresh:
        train += ["--overwrite"]
    if case.nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={case.nproc}", *train]
    return [sys.executable, *train]


def run_command(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
        )


def run_case(case: Case, workdir: Path) -> dict[str, Any]:
    """Train ``case`` with both backends and compare; returns the row of the report."""
    from lrkit.train.metrics import read_metrics

    t0 = time.perf_counter()
    dirs = {}
    for backend in ("lrkit", "torch"):
        run_dir = workdir / case.name / backend
        dirs[backend] = run_dir
        if case.resume_at is not None and (backend == "lrkit" or case.resume_spec is not None):
            run_command(train_command(case, backend, run_dir, case.resume_at, resume=False))
            run_command(train_command(case, backend, run_dir, case.steps, resume=True))
        else:
            run_command(train_command(case, backend, run_dir, case.steps, resume=False))
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
