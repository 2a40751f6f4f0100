"""One rank of the HF Trainer DDP test: ``torchrun --nproc-per-node 2 hf_trainer_ddp.py OUT_DIR``.

Trains :class:`~lrkit.integrations.hf_trainer.LrkitTrainer` on the tiny model with gradient accumulation and
``lr_check_ranks=True``, then writes ``rank<R>.json``: the per-update log, the schedule's step count, the
Trainer's update count, the model's forward calls (micro-batches) and the spec in force.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hf_trainer_tiny import tiny_args, tiny_data, tiny_model, update_logs  # noqa: E402

from lrkit.integrations.hf_trainer import LrkitTrainer  # noqa: E402


def main(out: Path) -> None:
    args = tiny_args(out / "run", gradient_accumulation_steps=2, max_steps=6, ddp_backend="gloo")
    model = tiny_model()
    trainer = LrkitTrainer(model=model, args=args, train_dataset=tiny_data(), lr_check_ranks=True)
    trainer.train()
    rank = dist.get_rank() if dist.is_initialized() else -1
    world = dist.get_world_size() if dist.is_initialized() else 1
    record = {
        "rank": rank,
        "world_size": world,
        "logs": update_logs(trainer.state.log_history),
        "schedule_steps": trainer.lr_scheduler.steps,
        "global_step": trainer.state.global_step,
        "forward_calls": model.calls,
        "spec": trainer.lr_scheduler.to_spec(),
        "peak": trainer.args.learning_rate,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
