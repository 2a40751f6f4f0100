"""Helpers shared by the test folders: the tiny trainer run, its traces, torchrun, and stepping a scheduler.

Test modules import them (``from tests.conftest import TINY, train_run``); every name keeps the
behaviour it had in the module that first defined it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import torch

from lrkit.train.arguments import add_train_arguments
from lrkit.train.checkpoint import list_checkpoints
from lrkit.train.command import run_train
from lrkit.train.loop import train
from lrkit.train.metrics import read_metrics
from lrkit.train.parallel import DistContext

#: A two-child ChainedScheduler (StepLR then LinearLR): the trainer tests' default schedule.
CHAINED = {
    "type": "ChainedScheduler",
    "schedulers": [
        {"type": "StepLR", "step_size": 3, "gamma": 0.5},
        {"type": "LinearLR", "start_factor": 0.1, "total_iters": 5},
    ],
}
#: The trainer's flags for the tiny GPT-2 on one thread, quiet and without plots.
TINY = ["--preset", "tiny", "--batch-size", "2", "--sequence-length", "32", "--no-plot", "--quiet", "--threads", "1"]


def parse(*argv: str) -> argparse.Namespace:
    """The trainer's flags ``argv``, parsed as ``lrkit train`` parses them."""
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(list(argv))


def train_run(tmp: Path, *argv: str) -> list[dict[str, Any]]:
    """Train the tiny model in this process with ``argv``; the records of its ``metrics.jsonl``."""
    train(parse(*TINY, "--run-dir", str(tmp), *argv), DistContext())
    return read_metrics(tmp / "metrics.jsonl")


def chained_run(tmp: Path, *argv: str) -> list[dict[str, Any]]:
    """:func:`train_run` with the chained schedule unless ``argv`` names another."""
    return train_run(tmp, "--lr-scheduler", json.dumps(CHAINED), *argv)


def trace(records: list[dict[str, Any]]) -> list[tuple[int, list[float], float]]:
    """What must be identical between two runs: step, per-group LR and loss (not the timings)."""
    return [(r["step"], r["lr"], r["loss"]) for r in records]


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps of the run's checkpoints, oldest first, whatever their format (a file or a directory)."""
    return [int(re.findall(r"step_(\d{8})", p.name)[0]) for p in list_checkpoints(run_dir)]


def torchrun(nproc: int, *argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m lrkit.train`` with the tiny flags and ``argv`` on ``nproc`` local ranks; it must succeed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    proc = subprocess.run(
        [*cmd, "-m", "lrkit.train", *TINY, *argv], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def train_error_of(tmp_path: Path, *argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The error ``lrkit train`` prints for ``argv`` (exit code 2), after checking that no step ran."""
    metrics = tmp_path / "metrics.jsonl"
    before = metrics.read_text() if metrics.exists() else None
    args = parse(*TINY, "--run-dir", str(tmp_path), "--num-iterations", "2", *argv)
    assert run_train(args) == 2
    assert (metrics.read_text() if metrics.exists() else None) == before  # no step ran
    return capsys.readouterr().err


def run_schedule(scheduler: Any, optimizer: Any, steps: int) -> list[list[float]]:
    """Every group's LR before the first update and after each of ``steps`` (optimizer, then scheduler) steps."""
    out = [[float(g["lr"]) for g in optimizer.param_groups]]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        out.append([float(g["lr"]) for g in optimizer.param_groups])
    return out


def wait_for_records(path: Path, count: int, proc: subprocess.Popen[Any], limit_s: float = 180) -> None:
    """Until ``path`` holds ``count`` records (or ``proc`` ended, or ``limit_s`` passed: the test then fails)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_text().count("\n") >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} did not reach {count} records (exit code {proc.poll()})")


def megatron_batch(start: int, increment: int, end: int, ramp: int, consumed: int) -> int:
    """The global batch of Megatron-LM's ``--rampup-batch-size START INCREMENT RAMP`` after ``consumed`` units
    (its ``RampupBatchsizeNumMicroBatchesCalculator.update``, with exact fractions): one ``increment`` every
    ``ramp / num_increments`` units, the end batch past the ramp. The oracle of lrkit's batch ramp."""
    if consumed > ramp or start == end:
        return end
    num_increments = (end - start) // increment
    return start + math.floor(consumed / Fraction(ramp, num_increments)) * increment


# ----------------------------------------------------------------------------- torch optimizers for scheduler tests


def sgd(*lrs: Any, momentum: float = 0.0) -> torch.optim.SGD:
    """An SGD with one one-parameter group per LR (default one group at 0.5)."""
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in (lrs or (0.5,))]
    return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum)


def lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    """Every group's LR as a float."""
    return [float(group["lr"]) for group in optimizer.param_groups]


def hyperparameters(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Every group's entries but its parameters: the LRs, momenta and bounds a scheduler keeps there."""
    return [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]


def round_trip(scheduler: Any) -> dict[str, Any]:
    """The scheduler's state after a JSON round trip, as a checkpoint would hold it."""
    return json.loads(json.dumps(scheduler.state_dict()))
