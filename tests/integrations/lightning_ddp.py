"""DDP on 2 CPU ranks (gloo) under Lightning with LrkitSchedule(check_ranks=True); run by test_lightning.py.

``python lightning_ddp.py OUT``: Lightning's ``strategy="ddp"`` relaunches this script for rank 1. Each rank
fits its shard of 16 samples (4 batches of 2, accumulating 2: 2 updates an epoch, 2 epochs) and writes
``OUT/rank<r>.json``: the LRs of its real optimizer updates (step pre-hook), the schedule's step count, the
world size, and the negative control: the message of ``check_same_lr()`` after rank 1's LR was moved.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist

from lrkit.integrations.lightning import LrkitSchedule
from lrkit.runtime import ScheduleError

SPEC = {"type": "WarmupCosine", "warmup_steps": 1, "total_steps": 4, "min_lr": 1e-4}


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def main(out: Path) -> None:
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=generator), torch.randn(16, 1, generator=generator)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)
    lrs: list[list[float]] = []

    class Recorder(pl.Callback):
        def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            trainer.optimizers[0].register_step_pre_hook(
                lambda opt, *_: lrs.append([float(g["lr"]) for g in opt.param_groups])
            )

    cb = LrkitSchedule(SPEC, check_ranks=True)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=2,
        accumulate_grad_batches=2,
        callbacks=[cb, Recorder()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=out,
    )
    trainer.fit(Tiny(), loader)
    assert cb.schedule is not None
    rank, world_size = dist.get_rank(), dist.get_world_size()
    # The negative control: check_same_lr (what check_ranks runs after every update) catches a moved rank.
    if rank == 1:
        cb.schedule.optimizer.param_groups[0]["lr"] *= 2
    try:
        cb.schedule.check_same_lr()
        mismatch = ""
    except ScheduleError as err:
        mismatch = str(err)
    record = {
        "spec": SPEC,
        "lrs": lrs,
        "updates": len(lrs),
        "steps": cb.schedule.steps,
        "world_size": world_size,
        "mismatch": mismatch,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
