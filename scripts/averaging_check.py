"""``make averaging-check``: is averaging the weights a cooldown? WSD's decay against a constant LR plus averaging.

The experiment of issue #17 (item 3), end to end on this machine, from nothing but the trainer:

1. Train the tiny GPT-2 on the default corpus (the Python standard library) with a shuffled sampler
   (``--data-order random``) three ways at the same peak LR and length:

   * ``wsd-20%``: warmup, a constant phase, and a decay over the last 20% of the updates (``1-sqrt`` to 0);
   * ``constant+avg``: the constant LR after the same warmup, keeping an EMA (``--ema``) and the average of the
     last 20% of the updates (``--average-last``);
   * ``wsd-20%+avg``: the WSD schedule with the same averages.

2. Read each run's last evaluation (``--eval-iters`` micro-batches of ``--batch-size x --sequence-length`` held-out
   tokens, the same tokens for every run and every weights): the validation loss of the raw weights, of the EMA
   and of the average, each with its standard error over the micro-batches.

The table is printed and written as Markdown (``averaging_check.md``), with the numbers as JSON, under ``--out``.
Runs that already finished under ``--out`` with the same flags are reused (``--fresh`` retrains them); the
training itself is :func:`law_check.train_all`'s (``--jobs`` runs at a time, one thread each, progress lines).

    python scripts/averaging_check.py [--out runs/averaging-check] [--steps 1000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from law_check import Run, train_all  # noqa: E402  (the same runner as make law-check)


def plan(args: argparse.Namespace) -> list[Run]:
    """The three setups, all at peak ``--lr`` after ``--warmup`` updates, ``--steps`` updates long."""
    steps, w = args.steps, ("--lr", f"{args.lr:g}", "--warmup-steps", str(args.warmup))
    decay = max(1, round(args.decay_fraction * steps))
    last = args.average_last if args.average_last is not None else decay
    wsd = ("--lr-scheduler", "wsd", *w, "--decay-steps", str(decay), "--decay-shape", "1-sqrt")
    averaging = ("--ema", f"{args.ema:g}", "--average-last", str(last))
    percent = f"{args.decay_fraction:.0%}"
    return [
        Run(f"wsd-{percent}", wsd, steps, "decay"),
        Run("constant+avg", ("--lr-scheduler", "constant", *w, *averaging), steps, "averaging"),
        Run(f"wsd-{percent}+avg", (*wsd, *averaging), steps, "both"),
    ]


def final(run: Run, out: Path) -> dict[str, Any]:
    """The run's last evaluation: the raw, EMA and averaged validation losses with their standard errors."""
    records = [json.loads(line) for line in (out / run.name / "metrics.jsonl").read_text().splitlines() if line]
    last = [r for r in records if "val_loss" in r][-1]
    keys = ("val_loss", "val_loss_se", "val_loss_ema", "val_loss_ema_se", "val_loss_avg", "val_loss_avg_se")
    return {"name": run.name, "step": last["step"], "schedule": list(run.schedule), **{k: last.get(k) for k in keys}}


def _cell(mean: float | None, se: float | None) -> str:
    return "—" if mean is None else f"{mean:.4f} ± {se:.4f}"


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The results as a Markdown table, one setup a row."""
    last = args.average_last if args.average_last is not None else max(1, round(args.decay_fraction * args.steps))
    lines = [
        f"| setup | final val loss, raw weights | EMA ({args.ema:g}) | average of the last {last} updates |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {_cell(r['val_loss'], r['val_loss_se'])} | "
            f"{_cell(r['val_loss_ema'], r['val_loss_ema_se'])} | {_cell(r['val_loss_avg'], r['val_loss_avg_se'])} |"
        )
    tokens = args.eval_iters * args.batch_size * args.sequence_length
    lines.append("")
    lines.append(
        f"Tiny GPT-2, {args.steps} updates of {args.batch_size} x {args.sequence_length} tokens, shuffled "
        f"(data seed {args.data_seed}), peak LR {args.lr:g} after {args.warmup} warmup updates; validation loss "
        f"(nats/token) over {tokens:,} held-out tokens ({args.eval_iters} micro-batches), ± its standard error "
        "over the micro-batches (the same tokens for every cell, so differences are less noisy than that)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/averaging-check"), help="runs and results (default: %(default)s)"
    )
    parser.add_argument("--steps", type=int, default=1000, help="updates per run (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=3e-3, help="the peak LR of every setup (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=50, help="warmup updates (default: %(default)s)")
    parser.add_argument(
        "--decay-fraction", type=float, default=0.2, help="WSD's decay, a fraction of the run (default: %(default)s)"
    )
    parser.add_argument("--ema", type=float, default=0.99, help="the EMA's decay per update (default: %(default)s)")
    parser.add_argument(
        "--average-last", type=int, default=None, help="updates averaged at the end (default: the decay's length)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per update (default: %(default)s)")
    parser.add_argument("--sequence-length", type=int, default=128, help="tokens per sequence (default: %(default)s)")
    parser.add_argument(
        "--eval-interval", type=int, default=100, help="updates between evaluations (default: %(default)s)"
    )
    parser.add_argument(
        "--eval-iters", type=int, default=100,
        help="validation micro-batches per evaluation (default: %(default)s, i.e. 204,800 tokens at 16 x 128)",
    )  # fmt: skip
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the shuffled order (default: %(default)s)")
    parser.add_argument(
        "--jobs", type=int, default=2, help="runs trained at once, one thread each (default: %(default)s)"
    )
    parser.add_argument("--fresh", action="store_true", help="retrain runs that are already finished under --out")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    runs = plan(args)
    print(f"averaging-check: {len(runs)} setups of the tiny GPT-2, {args.steps} updates of "
          f"{args.batch_size} x {args.sequence_length} tokens, shuffled, into {args.out}", flush=True)  # fmt: skip
    train_all(runs, args)
    results = [final(run, args.out) for run in runs]
    markdown = table(results, args)
    print()
    print(markdown)
    print()
    (args.out / "averaging_check.md").write_text(markdown + "\n")
    (args.out / "averaging_check.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                               "results": results}, indent=2) + "\n")  # fmt: skip
    print(f"averaging-check: {(time.monotonic() - started) / 60:.1f} min wall; wrote "
          f"{args.out / 'averaging_check.md'} and averaging_check.json")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
