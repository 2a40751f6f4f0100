"""Time and peak memory of ``lrkit preview`` and ``lrkit plot`` for runs of 10^6, 10^8 and 10^9 steps (issue 18).

Each command runs in its own process (``python -m lrkit.cli ...``, the issue's cosine schedule); its wall
time and its peak resident memory (``ru_maxrss`` from ``os.wait4``) are printed, beside a baseline process
that previews 10 steps (the cost of starting Python and importing torch, numpy and matplotlib). The
in-process rows time the evaluation itself (``curve_from_spec`` + ``run_checks``) and its peak Python
allocation (``tracemalloc``). Goal: every command under 5 s and 500 MB at 10^9 steps.

    python benchmarks/bounded_tools.py [--steps 1e6,1e8,1e9] [--stepped 1e6]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's lrkit, in process as in the subprocesses
#: The issue's schedule: cosine, peak 3e-3 after 5 warmup steps, floor 3e-4.
COSINE = ["--lr", "3e-3", "--lr-scheduler", "cosine", "--warmup-steps", "5", "--min-lr", "3e-4"]
GOAL_SECONDS, GOAL_MB = 5.0, 500.0


def run(argv: list[str]) -> tuple[float, float, int]:
    """``lrkit argv`` in a fresh process: (wall seconds, peak RSS in MB, exit code)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrkit.cli", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1) and proc.stderr is not None:
        print(proc.stderr.read().decode()[-500:], file=sys.stderr)
    return seconds, usage.ru_maxrss / 1024, proc.returncode  # ru_maxrss is in KiB on Linux


def evaluate(steps: int) -> tuple[float, float]:
    """In process: (seconds, peak traced MB) of evaluating and checking the cosine over ``steps`` steps."""
    from lrkit.tools.preview import curve_from_spec, run_checks

    spec = {"type": "WarmupCosine", "warmup_steps": 5, "total_steps": steps, "min_lr": 3e-4}
    curve_from_spec(spec, 3e-3, 100)  # imports and warm-up
    tracemalloc.start()
    start = time.perf_counter()
    run_checks(curve_from_spec(spec, 3e-3, steps))
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak


def _counts(text: str) -> list[int]:
    return [int(float(part)) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1e6,1e8,1e9", help="comma-separated run lengths (default 1e6,1e8,1e9)")
    parser.add_argument("--stepped", default="1e6", help="run length of the stepped StepLR row (default 1e6, the cap)")
    args = parser.parse_args()
    lengths = _counts(args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        png, csv = os.path.join(tmp, "lr.png"), os.path.join(tmp, "lr.csv")
        rows: list[tuple[str, float, float, int]] = []
        base = run(["preview", *COSINE, "--total-steps", "10"])
        rows.append(("preview, 10 steps (startup baseline)", *base))
        for steps in lengths:
            total = ["--total-steps", str(steps)]
            rows.append((f"preview, {steps:.0e} steps", *run(["preview", *COSINE, *total])))
            rows.append(
                (f"preview --csv (sampled grid), {steps:.0e} steps", *run(["preview", *COSINE, *total, "--csv", csv]))
            )
            rows.append((f"plot, {steps:.0e} steps", *run(["plot", *COSINE, *total, "-o", png])))
        for steps in _counts(args.stepped):
            stepped = ["--lr-scheduler", "step", "--step-size", "1000", "--total-steps", str(steps)]
            rows.append((f"preview StepLR (stepped), {steps:.0e} steps", *run(["preview", *stepped])))
    print("lrkit preview / plot of the issue's cosine (peak 3e-3, warmup 5, floor 3e-4), each in a fresh process")
    print(f"  {'command':<48} {'wall s':>8} {'peak RSS MB':>12} {'exit':>5}")
    for label, seconds, mb, code in rows:
        print(f"  {label:<48} {seconds:8.2f} {mb:12.0f} {code:>5}")
    print("evaluation and checks in process (curve_from_spec + run_checks)")
    print(f"  {'steps':<48} {'s':>8} {'traced MB':>12}")
    for steps in lengths:
        seconds, mb = evaluate(steps)
        print(f"  {steps:<48.0e} {seconds:8.3f} {mb:12.1f}")
    last = [r for r in rows if r[0].endswith(f"{max(lengths):.0e} steps") and "StepLR" not in r[0]]
    worst = max(r[1] for r in last), max(r[2] for r in last)
    met = worst[0] < GOAL_SECONDS and worst[1] < GOAL_MB
    beyond = worst[0] - base[0]  # on a loaded machine the start-up (importing torch) dominates the wall time
    print(
        f"  goal at {max(lengths):.0e} steps: every command under {GOAL_SECONDS:.0f} s and {GOAL_MB:.0f} MB "
        f"(worst {worst[0]:.2f} s, {worst[1]:.0f} MB): {'met' if met else 'NOT met'}; "
        f"beyond the {base[0]:.2f} s start-up: {beyond:.2f} s ({'met' if beyond < GOAL_SECONDS else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
