"""``lrkit train`` and ``python -m lrkit.train``: the flags become the run's config once, then the loop runs it
(:func:`lrkit.train.loop.train`)."""

from __future__ import annotations

import argparse
import os
import sys

from lrkit.train.arguments import add_train_arguments, config_from_args
from lrkit.train.errors import USER_ERRORS
from lrkit.train.loop import train
from lrkit.train.parallel import setup_distributed, teardown_distributed
from lrkit.train.shutdown import Shutdown, ShutdownAbandoned, TrainingStopped

__all__ = ["add_train_arguments", "main", "run_train"]


def run_train(args: argparse.Namespace) -> int:
    """Entry point behind ``lrkit train`` and ``python -m lrkit.train``; returns the exit code.

    ``args`` are the parsed flags (:func:`add_train_arguments`): they become the run's config once
    (``--config``'s file, with the flags typed on top). A user's mistake (:data:`USER_ERRORS`) prints
    ``lrkit train: error: ...`` and returns 2; anything else is a bug and raises with its traceback.
    SIGINT, SIGTERM and SIGUSR1 stop the run cleanly (:mod:`lrkit.train.shutdown`): one line, and the exit
    code of :func:`lrkit.train.shutdown.exit_code`: 0 for SIGTERM or SIGUSR1 (a scheduler's preemption) once
    the step is saved, ``128 + signal`` for SIGINT (130) and for a stop that lost steps.
    """
    with Shutdown() as shutdown:  # SIGINT, SIGTERM and SIGUSR1 from here on stop cleanly (lrkit.train.shutdown)
        try:
            return _run_train(args, shutdown)
        except ShutdownAbandoned as abandoned:  # a third signal: one line, no traceback
            if os.environ.get("RANK", "0") == "0":
                print(f"lrkit train: {abandoned}", file=sys.stderr, flush=True)
            return abandoned.exit_code


def _run_train(args: argparse.Namespace, shutdown: Shutdown) -> int:
    try:
        config = config_from_args(args)
        if getattr(args, "print_config", False):
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
            replica = config.parallel.tensor_parallel * config.parallel.pipeline_parallel
            print(config.resolve(max(1, world_size // replica)).to_toml(), end="")
            return 0
        parallel = config.parallel
        ctx = setup_distributed(
            parallel.tensor_parallel, parallel.device, parallel.pipeline_parallel, parallel.collective_timeout
        )
    except USER_ERRORS as err:
        print(f"lrkit train: error: {err}", file=sys.stderr)
        return 2
    try:
        train(config, ctx, shutdown)
    except USER_ERRORS as err:
        print(f"lrkit train: error: {err}", file=sys.stderr)
        return 2
    except TrainingStopped as stopped:  # one line, no traceback
        if ctx.is_main:
            print(f"lrkit train: {stopped}", file=sys.stderr, flush=True)
        return stopped.exit_code
    finally:
        teardown_distributed()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lrkit.train", description="Train GPT-2 / LLaMA-3 with an lrkit schedule."
    )
    add_train_arguments(parser)
    return run_train(parser.parse_args(argv))
