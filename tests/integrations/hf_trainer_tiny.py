"""The tiny model, data and arguments of the HF Trainer tests (shared by the test file and its torchrun script)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments


class Tiny(torch.nn.Module):
    """A two-layer regression model the Trainer can train: ``forward(x, labels)`` returns ``{"loss", "logits"}``.

    It counts its forward calls (``calls``), so a test can tell micro-batches from updates."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(4, 8)
        self.head = torch.nn.Linear(8, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.calls += 1
        y = self.head(torch.tanh(self.hidden(x))).squeeze(-1)
        out = {"logits": y}
        if labels is not None:
            out["loss"] = torch.nn.functional.mse_loss(y, labels)
        return out


def tiny_model(seed: int = 0) -> Tiny:
    """The same initial weights for every run."""
    torch.manual_seed(seed)
    return Tiny()


def tiny_data(n: int = 128) -> list[dict[str, torch.Tensor]]:
    """``n`` fixed samples ``{"x": (4,), "labels": ()}``."""
    g = torch.Generator().manual_seed(1234)
    return [{"x": torch.randn(4, generator=g), "labels": torch.randn((), generator=g)} for _ in range(n)]


def tiny_args(output_dir: Path | str, **overrides: Any) -> TrainingArguments:
    """CPU, no reporting, a log line per update, checkpoints by steps; ``overrides`` replace any of them."""
    base: dict[str, Any] = {
        "output_dir": str(output_dir),
        "use_cpu": True,
        "report_to": [],
        "per_device_train_batch_size": 2,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 1000,
        "learning_rate": 1e-2,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 2,
        "max_steps": 8,
        "seed": 0,
        "disable_tqdm": True,
        "log_level": "error",
        "dataloader_num_workers": 0,
    }
    base.update(overrides)
    return TrainingArguments(**base)


def update_logs(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Trainer's per-update log lines (the ones with a ``learning_rate``), in order."""
    return [entry for entry in log_history if "learning_rate" in entry]
