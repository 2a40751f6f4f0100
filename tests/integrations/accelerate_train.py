"""The training script that tests/integrations/test_accelerate.py runs under ``accelerate launch``.

``python accelerate_train.py CONFIG.json``: CONFIG holds ``out`` (a folder), ``runs``, a list of runs done one
after another in this process, each with a fresh ``Accelerator``, and optionally ``then``: ``{"script", "cwd"}``,
a script run after them as ``__main__`` in ``cwd`` (the docs example: a launch costs seconds).
A run trains a tiny model with ``gradient_accumulation_steps`` micro-batches per update and an lrkit schedule from
``lrkit.integrations.accelerate.prepare_schedule``; each rank writes ``<out>/<name>.rank<r>.json``: the LR before
the first update, after every update (with accelerate's ``optimizer_step_was_skipped`` and the schedule's count),
the inner optimizer's real ``step()`` calls, the resume notes and the final parameters.

Run keys: ``name``, ``spec``, ``updates`` (the run ends after update ``updates``), ``ga``, ``split_batches``,
``check_ranks``; optional ``save_at`` + ``save_dir`` (``save_state`` after that update), ``resume_from`` +
``start_at`` (``load_state`` of a checkpoint taken after update ``start_at``, then the rest of the data),
``policy``, ``scaler`` (a ``torch.amp.GradScaler("cpu")`` as the accelerator's fp16 scaler), ``inf_at`` (rank 0's
first micro-batch of that update has an inf loss), ``control`` (an lrkit scheduler of a second optimizer given to
``accelerator.prepare``, stepped as accelerate's examples do: accelerate's own path, for comparison).
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed

import lrkit
from lrkit.integrations.accelerate import prepare_schedule

MICRO_BATCH = 2  # samples per process and micro-step


def run(config: dict[str, Any], out: Path) -> None:
    accelerator = Accelerator(
        gradient_accumulation_steps=config["ga"],
        dataloader_config=DataLoaderConfiguration(split_batches=config["split_batches"]),
    )
    if config.get("scaler"):
        # accelerate makes no GradScaler on CPU (accelerator.py: fp16 needs a GPU); its fp16 path is the
        # accelerator's scaler, which AcceleratedOptimizer steps and reports in optimizer_step_was_skipped.
        accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    nproc, rank = accelerator.num_processes, accelerator.process_index
    set_seed(0)
    samples = config["updates"] * config["ga"] * MICRO_BATCH * nproc
    data = torch.utils.data.TensorDataset(torch.randn(samples, 4), torch.randn(samples, 1))
    batch = MICRO_BATCH * nproc if config["split_batches"] else MICRO_BATCH
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=False)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    schedule = prepare_schedule(
        accelerator,
        config["spec"],
        optimizer,
        resume_policy=config.get("policy", "strict"),
        check_ranks=config["check_ranks"],
    )
    real_steps: list[int] = []
    optimizer.optimizer.register_step_post_hook(lambda *_: real_steps.append(1))
    control = None
    if config.get("control"):
        dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
        control_scheduler = lrkit.build_scheduler(config["spec"], dummy)
        dummy, control = accelerator.prepare(dummy, control_scheduler)

    start = 0
    if config.get("resume_from"):
        accelerator.load_state(config["resume_from"])
        start = config["start_at"]
        loader = accelerator.skip_first_batches(loader, start * config["ga"])
    record: dict[str, Any] = {
        "num_processes": nproc,
        "lr_start": schedule.get_last_lr(),
        "steps_start": schedule.last_epoch,
        "notes": schedule.resume_notes,
        "updates": [],
        "control": [],
    }
    update = start
    for micro, (x, y) in enumerate(loader):
        with accelerator.accumulate(model):
            loss = torch.nn.functional.mse_loss(model(x), y)
            if config.get("inf_at") == update + 1 and rank == 0 and micro % config["ga"] == 0:
                loss = loss * float("inf")
            accelerator.backward(loss)
            optimizer.step()
            schedule.step()  # as accelerate's examples call lr_scheduler.step(): a no-op, the hook stepped it
            optimizer.zero_grad()
            if control is not None:
                dummy.step()
                control.step()
        if accelerator.sync_gradients:
            update += 1
            record["updates"].append(
                {
                    "update": update,
                    "skipped": accelerator.optimizer_step_was_skipped,
                    "steps": schedule.last_epoch,
                    "lr": schedule.get_last_lr(),
                }
            )
            if control is not None:
                record["control"].append(control.get_last_lr())
            if update == config.get("save_at"):
                accelerator.save_state(config["save_dir"])
    record["real_steps"] = len(real_steps)
    record["params"] = [p.detach().flatten().tolist() for p in accelerator.unwrap_model(model).parameters()]
    (out / f"{config['name']}.rank{rank}.json").write_text(json.dumps(record))
    accelerator.wait_for_everyone()


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    for one in config["runs"]:
        run(one, Path(config["out"]))
    then = config.get("then")
    if then:  # one more script in this launch (the docs example), as __main__ in its own folder
        os.chdir(then["cwd"])
        runpy.run_path(then["script"], run_name="__main__")


if __name__ == "__main__":
    main()
