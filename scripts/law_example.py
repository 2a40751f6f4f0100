"""The synthetic example of docs/loss-laws.md: runs whose val loss a known multi-power law generated.

    python scripts/law_example.py write --out runs/law-example      # constant/ and cosine/ metrics.jsonl
    lrkit fit-law runs/law-example/constant runs/law-example/cosine -o law.json --loss val
    python scripts/law_example.py compare --law law.json           # generating vs fitted law, held-out schedules

Two runs of 2,000 updates (peak 1e-3, 50 warmup), the val loss every 50 updates with 0.1% Gaussian noise (seed 0),
in the trainer's ``metrics.jsonl`` records. Nothing here is a test: it shows that the fit and the search work when
the data follow a law.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lrkit import schedules as S
from lrkit.schedules import laws

TRUE = {"L0": 2.5, "A": 0.6, "alpha": 0.45, "B": 300.0, "C": 2.0, "beta": 0.6, "gamma": 0.55}
PEAK, WARMUP, TOTAL, EVERY, NOISE = 1e-3, 50, 2000, 50, 0.001


def schedules() -> dict[str, np.ndarray]:
    """The LR of updates 1..TOTAL (update s uses the schedule at step s - 1, as in the trainer)."""
    steps = np.arange(TOTAL)
    return {
        "constant": S.WarmupConstant(PEAK, WARMUP)(steps),
        "cosine, floor 1e-4": S.WarmupCosine(PEAK, WARMUP, TOTAL, min_lr=1e-4)(steps),
        "WSD, 20% 1-sqrt decay": S.WSD(PEAK, WARMUP, TOTAL, decay_fraction=0.2, decay_shape="1-sqrt")(steps),
        "linear to 0": S.WarmupLinear(PEAK, WARMUP, TOTAL)(steps),
    }


def write(out: Path) -> None:
    law = laws.Law("mpl", TRUE)
    rng = np.random.default_rng(0)
    lrs = schedules()
    for name, key in (("constant", "constant"), ("cosine", "cosine, floor 1e-4")):
        clean = laws.predict(law, lrs[key])
        (out / name).mkdir(parents=True, exist_ok=True)
        with (out / name / "metrics.jsonl").open("w") as f:
            for s in range(1, TOTAL + 1):
                record: dict = {"step": s, "lr": [float(lrs[key][s - 1])]}
                if s % EVERY == 0:
                    record["val_loss"] = float(clean[s - 1] * (1 + NOISE * rng.standard_normal()))
                f.write(json.dumps(record) + "\n")
    print(f"wrote {out}/constant and {out}/cosine")


def compare(law_path: str, tuned: list[str]) -> None:
    fitted, true = laws.load_law(law_path), laws.Law("mpl", TRUE)
    rows = dict(schedules())
    if tuned:  # e.g. 500:1-sqrt:20, lrkit tune's decay steps, shape and warmup
        decay, shape, warmup = tuned[0].split(":")
        steps = np.arange(TOTAL)
        rows[f"WSD, {decay} {shape} decay, {warmup} warmup (tune's pick)"] = S.WSD(
            PEAK, int(warmup), TOTAL, decay_steps=int(decay), decay_shape=shape
        )(steps)
    print(f"| schedule ({TOTAL:,} updates) | generating law | fitted law | error |")
    print("|---|---|---|---|")
    for name, lrs in rows.items():
        a, b = float(laws.predict_final(true, lrs)), float(laws.predict_final(fitted, lrs))
        label = f"{name} (fitted on)" if name in ("constant", "cosine, floor 1e-4") else name
        print(f"| {label} | {a:.4f} | {b:.4f} | {(b - a) / a:+.2%} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write the two runs")
    w.add_argument("--out", type=Path, default=Path("runs/law-example"))
    c = sub.add_parser("compare", help="final losses of the generating and the fitted law")
    c.add_argument("--law", required=True)
    c.add_argument("--tuned", nargs="*", default=[], metavar="DECAY:SHAPE:WARMUP")
    args = parser.parse_args(argv)
    if args.command == "write":
        write(args.out)
    else:
        compare(args.law, args.tuned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
