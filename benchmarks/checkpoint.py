"""Checkpoint save cost under FSDP2: the gathered (full) save against the sharded sync and async saves (issue 15).

One ``torchrun`` launch of ``--ranks`` CPU processes (gloo) builds the trainer once, through its own code path
(:func:`lrkit.train.loop.setup` with ``lrkit train`` flags: ``--model gpt2 --preset 124M --fsdp --batch-size 1
--sequence-length 64 --threads 1``, fp32, the default corpus), and saves it with :func:`lrkit.train.loop.save` in
three formats, one after the other in every repeat (the order rotates, so drift in machine speed hits all alike):

* ``full`` (the anchor): ``--checkpoint-format full``, every rank's state gathered to rank 0
  (``get_model_state_dict`` / ``get_optimizer_state_dict`` with ``full_state_dict=True, cpu_offload=True``),
  then one ``torch.save`` by rank 0, read back and published;
* ``sharded``: every rank writes its own shards with torch.distributed.checkpoint, synchronously;
* ``async``: ``--async-checkpoint``: the shards are staged (copied) to host memory and written by a background
  thread; :meth:`ShardedSaver.wait` blocks until the checkpoint is published.

Per format and repeat, every rank starts each timed region after a barrier, and the figure is the max over ranks:

1. **save time**: ``save(t)`` until the checkpoint is published (async: the ``save`` call plus ``wait()``);
2. **blocks**: the ``save`` call alone (async: the staging copy, until training may go on; sync: the save);
3. **stall**: the wall time of a step that saves (``train_step`` then ``save``; async: its ``save`` returns
   after staging) minus that of a plain step timed just before it; the median over the repeats. For async the
   ``wait()`` comes after the timed region: the stall is what training waits for, not the background write
   (which, on a machine with few cores, also slows the steps it overlaps; that is not measured here);
4. **peak memory**: just before the save every rank returns the allocator's free memory to the system
   (glibc's ``malloc_trim``: else memory an earlier save freed would hide this one's growth), resets its peak
   RSS (``5`` to ``/proc/self/clear_refs`` resets ``VmHWM``) and notes its ``VmRSS``; after the save (async:
   after ``wait()``) it reads ``VmHWM``. The
   figure is the increase, in MiB, for rank 0 and the max over the other ranks; the worst repeat is reported.

For reference the model's full size (parameters + AdamW's two moments, fp32) and one rank's shard of it are
printed. Goals (reported, not asserted): rank 0's peak during a sharded save holds about its shard, no longer
growing with the full model (within 10% of one shard); the async stall is at most 10% of a sync sharded save.

    .venv/bin/python benchmarks/checkpoint.py [--ranks 4] [--preset 124M] [--repeats 3]

It launches ``torchrun`` itself (with ``OMP_NUM_THREADS=1``); checkpoints go to a temporary directory, removed
at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

FORMATS = ("full", "sharded", "async")
STALL_GOAL = 0.10
MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=4, help="CPU processes (FSDP2 over all of them)")
    parser.add_argument("--preset", default="124M", help="the GPT-2 preset")
    parser.add_argument("--repeats", type=int, default=3, help="timed saves per format")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # a torchrun rank
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="lrkit-ckbench-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    here = Path(__file__).resolve()
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.ranks),
        str(here), "--worker", "--preset", args.preset, "--repeats", str(args.repeats), "--root", str(root),
    ]  # fmt: skip
    try:
        code = subprocess.call(command, env=env)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    one, five, _ = os.getloadavg()
    print(f"whole run {time.perf_counter() - start:.0f} s wall; load average {one:.2f} (1 min), {five:.2f} (5 min) "
          f"on {os.cpu_count()} cores")  # fmt: skip
    sys.exit(code)


# ----------------------------------------------------------------------------- in each torchrun rank


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    """Return the allocator's free memory to the system, reset VmHWM to the current RSS (Linux) and return
    VmRSS in KiB. Without the trim, memory an earlier save or step freed but glibc kept would hide the save's
    own growth (most of GPT-2's tensors are under glibc's 32 MiB mmap threshold, so they come from the heap)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


def worker(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist

    from lrkit.train.arguments import add_train_arguments, config_from_args
    from lrkit.train.loop import save, setup, train_step
    from lrkit.train.parallel import setup_distributed
    from lrkit.train.sharded import ShardedSaver, tensor_state

    ctx = setup_distributed(device="cpu")
    flags = argparse.ArgumentParser()
    add_train_arguments(flags)
    run_dir = Path(args.root) / "run"
    config = config_from_args(
        flags.parse_args(
            [
                "--model", "gpt2", "--preset", args.preset, "--fsdp",
                "--batch-size", "1", "--sequence-length", "64",
                "--dtype", "float32", "--device", "cpu", "--threads", "1",
                "--num-iterations", "1000", "--lr", "1e-4",
                "--run-dir", str(run_dir), "--keep-last", "1",
                "--checkpoint-format", "sharded", "--quiet", "--no-plot",
            ]
        )
    )  # fmt: skip
    t = setup(config, ctx)
    sync_saver = t.saver
    async_saver = ShardedSaver(run_dir, ctx, config.checkpoint.keep_last, async_save=True)
    savers = {"full": None, "sharded": sync_saver, "async": async_saver}

    def max_over_ranks(value: float) -> float:
        v = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(v, op=dist.ReduceOp.MAX)
        return float(v.item())

    def gather(value: float) -> list[float]:
        out = [torch.zeros(1, dtype=torch.float64) for _ in range(ctx.world_size)]
        dist.all_gather(out, torch.tensor([value], dtype=torch.float64))
        return [float(v.item()) for v in out]

    def timed(fn: Callable[[], object]) -> float:
        dist.barrier()
        start = time.perf_counter()
        fn()
        return max_over_ranks(time.perf_counter() - start)

    train_step(t)  # warm-up: the optimizer state exists from here on (AdamW's moments)
    state = tensor_state(t.pm, t.optimizer)
    full_bytes = sum(v.numel() * v.element_size() for v in state.values())  # a DTensor's numel is global
    shard_bytes = sum(
        (v.to_local() if hasattr(v, "to_local") else v).numel() * v.element_size() for v in state.values()
    )
    shard_max = max_over_ranks(shard_bytes)
    del state
    for fmt in FORMATS:  # warm-up save per format (first-time costs: DCP's planner, the save groups' first use)
        t.saver = savers[fmt]
        train_step(t)
        save(t)
        if t.saver is not None:
            t.saver.wait()

    results: dict[str, dict[str, list[float]]] = {f: {k: [] for k in ("step", "stepsave", "save", "call", "mem")}
                                                  for f in FORMATS}  # fmt: skip
    mem_ranks: dict[str, list[list[float]]] = {f: [] for f in FORMATS}
    for repeat in range(args.repeats):
        order = FORMATS[repeat % 3 :] + FORMATS[: repeat % 3]
        for fmt in order:
            r = results[fmt]
            t.saver = savers[fmt]
            r["step"].append(timed(lambda: train_step(t)))
            dist.barrier()
            start = time.perf_counter()
            train_step(t)
            stepped = time.perf_counter()
            before = _reset_peak()  # not timed: the stall is this step's time plus its save's
            saved = time.perf_counter()
            save(t)
            done = time.perf_counter()
            r["stepsave"].append(max_over_ranks(stepped - start + done - saved))
            r["call"].append(max_over_ranks(done - saved))
            if t.saver is not None:
                t.saver.wait()
            r["save"].append(max_over_ranks(time.perf_counter() - saved))
            increase = (_status_kib("VmHWM") - before) / 1024
            mem_ranks[fmt].append(gather(increase))
            if ctx.is_main:
                print(
                    f"  repeat {repeat + 1} {fmt:<8} step {r['step'][-1]:6.2f} s  step+save {r['stepsave'][-1]:6.2f} s"
                    f"  save {r['save'][-1]:6.2f} s  rank-0 peak {increase:+6.0f} MiB",
                    flush=True,
                )
    async_saver.close()
    if ctx.is_main:
        report(args, ctx.world_size, results, mem_ranks, full_bytes, shard_max)
    dist.barrier()
    dist.destroy_process_group()


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def report(
    args: argparse.Namespace,
    ranks: int,
    results: dict[str, dict[str, list[float]]],
    mem_ranks: dict[str, list[list[float]]],
    full_bytes: int,
    shard_bytes: float,
) -> None:
    import torch

    med = statistics.median
    rows = {}
    for fmt in FORMATS:
        r = results[fmt]
        stalls = [s - p for s, p in zip(r["stepsave"], r["step"], strict=True)]
        rank0 = max(m[0] for m in mem_ranks[fmt])
        others = max((max(m[1:]) for m in mem_ranks[fmt]), default=float("nan"))
        rows[fmt] = (med(r["step"]), med(r["save"]), med(r["call"]), med(stalls), rank0, others)
    full_mib, shard_mib = full_bytes / MIB, shard_bytes / MIB
    print(
        f"\ntorch {torch.__version__}, GPT-2 {args.preset} under FSDP2 on {ranks} CPU ranks (gloo), batch 1 x 64, "
        f"1 thread per rank, {args.repeats} repeats per format (medians; memory: worst repeat)"
    )
    print(f"model: params + AdamW state {full_mib:.0f} MiB in full, {shard_mib:.0f} MiB per rank's shard")
    print(
        f"{'format':<10}{'step s':>8}{'save s':>9}{'blocks s':>10}{'stall s':>9}"
        f"{'rank-0 peak MiB':>17}{'other ranks MiB':>17}"
    )
    for fmt, (step, saved, call, stall, rank0, others) in rows.items():
        print(f"{fmt:<10}{step:8.2f}{saved:9.2f}{call:10.2f}{stall:9.2f}{rank0:+17.0f}{others:+17.0f}")
    full, sharded, async_ = rows["full"], rows["sharded"], rows["async"]
    print(
        f"save time vs full: sharded {_ratio(sharded[1], full[1])}, async {_ratio(async_[1], full[1])}; "
        f"stall vs full: sharded {_ratio(sharded[3], full[3])}, async {_ratio(async_[3], full[3])}"
    )
    print(
        f"rank-0 peak vs full: sharded {_ratio(sharded[4], full[4])}, async {_ratio(async_[4], full[4])}; "
        f"vs the model's full size: full {_ratio(full[4], full_mib)}, sharded {_ratio(sharded[4], full_mib)}, "
        f"async {_ratio(async_[4], full_mib)}; vs one shard: sharded {_ratio(sharded[4], shard_mib)}, "
        f"async {_ratio(async_[4], shard_mib)}"
    )
    goal = STALL_GOAL * sharded[1]
    print(
        f"goal: async stall <= {STALL_GOAL:.0%} of a sync sharded save ({sharded[1]:.2f} s): by step difference "
        f"{async_[3]:.2f} s = {_ratio(async_[3], sharded[1])} ({'met' if async_[3] <= goal else 'NOT met'}); "
        f"the save call's own blocking time {async_[2]:.2f} s = {_ratio(async_[2], sharded[1])} "
        f"({'met' if async_[2] <= goal else 'NOT met'})"
    )
    for fmt in ("sharded", "async"):  # "only its shard": within 10% of one shard, whatever the model's size
        peak = rows[fmt][4]
        verdict = "met" if peak <= 1.1 * shard_mib else "NOT met"
        print(
            f"goal: rank 0's peak during a sharded save ({fmt}) holds only its shard ({shard_mib:.0f} MiB), "
            f"not the model ({full_mib:.0f} MiB): {peak:+.0f} MiB = {_ratio(peak, shard_mib)} its shard, "
            f"{_ratio(peak, full_mib)} the model ({verdict})"
        )


if __name__ == "__main__":
    main()
