"""The ``lrkit`` command: ``preview``, ``plot``, ``train``, ``demo``, ``align``, ``find-lr`` and ``checkpoint``.

The top layer: it only dispatches. Each command imports its module (and so torch) only when it runs, so
``lrkit --help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["main"]

Command = tuple[Callable[[argparse.ArgumentParser], None] | None, Callable[..., Any]]


def _preview() -> Command:
    from lrkit.tools.preview import add_preview_arguments, run_preview

    return add_preview_arguments, run_preview


def _plot() -> Command:
    from lrkit.tools.preview import add_plot_arguments, run_plot

    return add_plot_arguments, run_plot


def _train() -> Command:
    from lrkit.train.arguments import add_train_arguments
    from lrkit.train.command import run_train

    return add_train_arguments, run_train


def _demo() -> Command:
    from lrkit.cli.demo import run_demo

    return None, run_demo


def _align() -> Command:
    from lrkit.align.command import add_align_arguments, run_align

    return add_align_arguments, run_align


def _find_lr() -> Command:
    from lrkit.train.find_lr import add_find_lr_arguments, run_find_lr

    return add_find_lr_arguments, run_find_lr


def _checkpoint() -> Command:
    from lrkit.train.checkpoint_command import add_checkpoint_arguments, run_checkpoint

    return add_checkpoint_arguments, run_checkpoint


def _fit_law() -> Command:
    from lrkit.tools.law import add_fit_law_arguments, run_fit_law

    return add_fit_law_arguments, run_fit_law


def _predict() -> Command:
    from lrkit.tools.law import add_predict_arguments, run_predict

    return add_predict_arguments, run_predict


def _tune() -> Command:
    from lrkit.tools.law import add_tune_arguments, run_tune

    return add_tune_arguments, run_tune


#: command -> (loader of (argument adder or None, runner), help); a loader imports its module when the command runs
_COMMANDS: dict[str, tuple[Callable[[], Command], str]] = {
    "preview": (_preview, "key points, sparkline and checks of a schedule (exit 1 if a check fails)"),
    "plot": (_plot, "draw a schedule to a PNG, phases marked"),
    "train": (_train, "train GPT-2 / LLaMA-3 with a schedule"),
    "demo": (_demo, "preview, train, checkpoint and resume a tiny model"),
    "align": (_align, "compare lrkit's LRs and losses with PyTorch's"),
    "find-lr": (_find_lr, "LR range test"),
    "checkpoint": (
        _checkpoint,
        "inspect a checkpoint (step, clocks, spec, LR now and next, layout, size) or export its model to safetensors",
    ),
    "fit-law": (_fit_law, "fit a loss law (loss from the LR schedule) to runs' metrics.jsonl"),
    "predict": (_predict, "predict the loss curves of schedules with a fitted law"),
    "tune": (_tune, "search a schedule family for the lowest predicted final loss"),
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrkit",
        description="Exact, resumable, inspectable learning-rate schedules. Look at a schedule before training.",
        epilog="Example: lrkit preview --lr-scheduler cosine --lr 3e-4 --warmup-steps 100 --total-steps 10000 "
        "--min-lr 3e-5",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in _COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def _run_command(command: str, argv: list[str]) -> int:
    load, help_text = _COMMANDS[command]
    adder, runner = load()
    parser = argparse.ArgumentParser(prog=f"lrkit {command}", description=help_text)
    if adder is None:
        parser.parse_args(argv)
        return int(runner() or 0)
    adder(parser)
    return int(runner(parser.parse_args(argv)) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lrkit`` console script; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list and args_list[0] in _COMMANDS:
            return _run_command(args_list[0], args_list[1:])
        parser = _build_parser()
        parser.parse_args(args_list)  # --help, or an unknown command: exits
        parser.print_help()
        return 2
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BrokenPipeError:  # `lrkit preview | head`: the reader left early; stop quietly, as a shell tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not raise again
        return 128 + 13  # SIGPIPE's exit status
