"""``make demo`` / ``lrkit demo``: preview a schedule, train on it, checkpoint, resume.

1. ``lrkit preview`` of the warmup + cosine schedule (key points, sparkline, checks).
2. Train the tiny GPT-2 on the standard-library corpus for the first part of the
   run, checkpointing as it goes.
3. Resume from the newest checkpoint and finish the run: the LR continues where
   it stopped, with no jump.
4. Print where the run directory, the metrics and the plot are.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

TOTAL_STEPS = 400
FIRST_LEG = 300

SCHEDULE = [
    "--lr-scheduler", "cosine",
    "--lr", "3e-3",
    "--warmup-steps", "40",
    "--total-steps", str(TOTAL_STEPS),
    "--min-lr", "3e-4",
]  # fmt: skip

TRAIN = [
    "--model", "gpt2",
    "--preset", "tiny",
    "--batch-size", "16",
    "--sequence-length", "128",
    "--eval-interval", "50",
    "--save-interval", "50",
    "--threads", "2",
]  # fmt: skip


def run_demo(args: argparse.Namespace | None = None) -> int:
    """Run the demo; returns the exit code."""
    from lrkit.tools.preview import add_preview_arguments, run_preview
    from lrkit.train.command import main as train_main
    from lrkit.train.metrics import read_metrics

    run_dir = Path("runs/demo")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    print("== 1/3  Preview the schedule before spending compute on it\n", flush=True)
    preview = argparse.ArgumentParser(prog="lrkit preview")
    add_preview_arguments(preview)
    code = run_preview(preview.parse_args(SCHEDULE))
    if code != 0:
        return code
    print(f"\n== 2/3  Train GPT-2 (tiny) on the Python standard library: steps 1-{FIRST_LEG} of {TOTAL_STEPS}\n")
    common = [*TRAIN, *SCHEDULE, "--run-dir", str(run_dir)]
    code = train_main([*common, "--num-iterations", str(FIRST_LEG), "--no-plot"])
    if code != 0:
        return code
    print(f"\n== 3/3  Resume from the last checkpoint and finish: steps {FIRST_LEG + 1}-{TOTAL_STEPS}\n")
    code = train_main([*common, "--num-iterations", str(TOTAL_STEPS), "--resume", "auto"])
    if code != 0:
        return code
    records = read_metrics(run_dir / "metrics.jsonl")
    first, last = records[0], records[-1]
    evals = [r for r in records if "val_loss" in r]
    at_resume = [r for r in records if r["step"] in (FIRST_LEG, FIRST_LEG + 1)]
    print("\n== Summary")
    print(f"  train loss  {first['loss']:.4f} (step 1) -> {last['loss']:.4f} (step {last['step']})")
    if evals:
        print(f"  val loss    {evals[0]['val_loss']:.4f} (step {evals[0]['step']}) -> {evals[-1]['val_loss']:.4f}")
    if len(at_resume) == 2:
        print(
            f"  LR across the resume: step {FIRST_LEG} {at_resume[0]['lr'][0]:.6e} -> "
            f"step {FIRST_LEG + 1} {at_resume[1]['lr'][0]:.6e}"
        )
    print(f"  run dir     {run_dir.resolve()}")
    print(f"  metrics     {(run_dir / 'metrics.jsonl').resolve()}")
    print(f"  plot        {(run_dir / 'lr_loss.png').resolve()}")
    print(f"  checkpoints {(run_dir / 'checkpoints').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
