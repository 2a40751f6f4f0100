"""``--tensorboard``: the metrics records as TensorBoard scalars (``torch.utils.tensorboard``), on the main rank.

Each step's record (:mod:`lrkit.train.loop`) becomes the scalars of :func:`scalars`, at ``global_step`` = the
optimizer step, in event files under ``--tensorboard-dir`` (default ``<run-dir>/tensorboard``). Per-group
values are tagged by the group's name (:func:`lrkit.train.telemetry.group_labels`): ``lr/decay``,
``update_ratio/no_decay``, ``grad_norm/total``.

A resumed run continues the same event files: the writer opens with ``purge_step`` = its first step, so
TensorBoard hides the events a run wrote past the checkpoint resumed from (as ``metrics.jsonl`` moves those
records to ``superseded/``). The writer is flushed and closed when the run ends, however it ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lrkit.train.config import LoggingConfig
from lrkit.train.errors import TrainError
from lrkit.train.telemetry import group_labels

__all__ = ["PIP_COMMAND", "TensorBoardLog", "scalars", "tensorboard_dir"]

#: What installs the package ``--tensorboard`` needs.
PIP_COMMAND = "pip install 'tensorboard>=2.14'"

#: Per-group fields of the record -> their tag prefix.
_PER_GROUP = {
    "lr": "lr",
    "grad_norm_groups": "grad_norm",
    "update_ratio": "update_ratio",
    "weight_decay": "weight_decay",
    "beta2": "beta2",
    "momentum": "momentum",
}
#: Single-value fields of the record -> their tag.
_SINGLE = {
    "loss": "loss/train",
    "val_loss": "loss/val",
    "val_loss_se": "loss/val_se",
    "val_loss_ema": "loss/val_ema",
    "val_loss_avg": "loss/val_avg",
    "val_ppl": "perplexity/val",
    "grad_norm": "grad_norm/total",
    "update_ratio_total": "update_ratio/total",
    "loss_scale": "loss_scale",
    "skipped": "skipped",
    "tokens": "tokens",
    "batch_sequences": "batch/sequences",
    "grad_accum": "batch/grad_accum",
    "grad_clip": "grad_clip",
    "tok_per_s": "throughput/tok_per_s",
}


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """A metrics record as TensorBoard scalars, by tag: one per group of each per-group field
    (``lr/<group>``, ``grad_norm/<group>``, ``update_ratio/<group>``, and the scheduled ``weight_decay``,
    ``beta2``, ``momentum``), and ``loss/train``, ``loss/val``, ``perplexity/val``, ``grad_norm/total``,
    ``update_ratio/total``, ``loss_scale``, ``skipped`` (1 or 0), ``tokens``, ``batch/sequences``,
    ``batch/grad_accum``, ``grad_clip``,
    ``throughput/tok_per_s``; a field the record lacks (and a group's value that is None) gives none."""
    out: dict[str, float] = {}
    names = group_labels(record)
    for key, prefix in _PER_GROUP.items():
        values = record.get(key)
        if values is None:
            continue
        for name, value in zip(names, values):
            if value is not None:
                out[f"{prefix}/{name}"] = float(value)
    for key, tag in _SINGLE.items():
        value = record.get(key)
        if value is not None:
            out[tag] = float(value)
    return out


def tensorboard_dir(logging: LoggingConfig) -> Path:
    """Where the event files go: ``--tensorboard-dir``, else ``<run-dir>/tensorboard``."""
    given = logging.tensorboard_dir
    return Path(given) if given is not None else Path(logging.run_dir) / "tensorboard"


def _summary_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``; a :class:`TrainError` naming the flag when the package is absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # torch's module raises ImportError when the tensorboard package is missing
        raise TrainError(
            f"--tensorboard needs the tensorboard package, which is not installed ({err}): {PIP_COMMAND}, "
            "or pip install 'lrkit[train]'"
        ) from None
    return SummaryWriter


class TensorBoardLog:
    """The run's TensorBoard writer; does nothing unless ``--tensorboard`` is on and ``enabled`` (the main rank).

    Built at the start of the run, on every rank, so a missing package fails them all before any step.
    The event files are opened at the first :meth:`write`. A context manager: leaving it closes the writer.
    """

    def __init__(self, logging: LoggingConfig, enabled: bool) -> None:
        if logging.tensorboard_dir is not None and not logging.tensorboard:
            raise TrainError(f"--tensorboard-dir {logging.tensorboard_dir} needs --tensorboard")
        self.on = logging.tensorboard
        self.enabled = enabled and logging.tensorboard
        self.log_dir = tensorboard_dir(logging)
        self._writer_class = _summary_writer_class() if self.on else None
        self._writer: Any = None

    def write(self, record: dict[str, Any]) -> None:
        """Add ``record``'s :func:`scalars` at ``global_step = record["step"]``."""
        if not self.enabled:
            return
        step = int(record["step"])
        if self._writer is None:  # events a replaced timeline wrote from this step on are hidden
            assert self._writer_class is not None
            self._writer = self._writer_class(log_dir=str(self.log_dir), purge_step=step)
        for tag, value in scalars(record).items():
            self._writer.add_scalar(tag, value, global_step=step)

    def close(self) -> None:
        """Flush the events to disk and close the files (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
