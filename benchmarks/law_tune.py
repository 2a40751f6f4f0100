"""Time ``lrkit tune``'s vectorised search: the predicted final loss of N candidate schedules of T steps (issue 16).

The law is a multi-power law with constants of the paper's order (Luo et al. 2025); the candidates are WSD
schedules (decay fractions x shapes x warmups) and cosine floors, as ``lrkit tune`` builds them. Goal: 1,000
candidates of 100,000 steps in under 10 s on the 2-core machine. Prints the seconds and candidates/s for the
multi-power and the annealing forms, wall and CPU time (the verdict reads the CPU time: on a shared machine the
wall time also counts the other jobs).

    python benchmarks/law_tune.py [--candidates 1000] [--steps 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lrkit.schedules import laws  # noqa: E402
from lrkit.tools.law import predicted_finals, tune_candidates  # noqa: E402

GOAL_SECONDS = 10.0


def candidates(n: int, total: int) -> list:
    """``n`` candidates: half WSD (fractions x 3 shapes x 3 warmups), half cosine (floors x 3 warmups)."""
    warmups = [0.01, 0.02, 0.05]
    shapes = ["linear", "cosine", "1-sqrt"]
    wsd_n = n // 2
    fractions = [0.01 + 0.9 * i / max(1, wsd_n // 9) for i in range(wsd_n // 9 + 1)]
    floors = [0.5 * i / max(1, (n - wsd_n) // 3) for i in range((n - wsd_n) // 3 + 1)]
    out = tune_candidates("wsd", 3e-3, total, warmups, fractions, shapes)[:wsd_n]
    out += tune_candidates("cosine", 3e-3, total, warmups, floors=floors)[: n - len(out)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    laws_by_form = {
        "mpl": laws.Law("mpl", {"L0": 2.5, "A": 0.6, "alpha": 0.45, "B": 400.0, "C": 2.0, "beta": 0.6, "gamma": 0.55}),
        "annealing": laws.Law("annealing", {"L0": 2.5, "A": 0.6, "alpha": 0.45, "C": 0.5, "decay": 0.999}),
    }
    cands = candidates(args.candidates, args.steps)
    print(f"{len(cands)} candidate schedules of {args.steps} steps")
    for form, law in laws_by_form.items():
        start, cpu = time.perf_counter(), time.process_time()
        finals = predicted_finals(law, cands, args.steps)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        verdict = "ok" if cpu < GOAL_SECONDS * len(cands) / 1000 * args.steps / 100_000 else "SLOW"
        print(
            f"  {form:<9} {seconds:6.2f} s wall ({cpu:.2f} s CPU)  {len(cands) / seconds:8.1f} candidates/s  "
            f"best {finals.min():.4f}  ({verdict}; goal 1000 x 100k in {GOAL_SECONDS:g} s)"
        )


if __name__ == "__main__":
    main()
