"""The run's record: ``metrics.jsonl`` (one JSON object per optimizer step), the per-step line, the plot."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from lrkit.train.errors import TrainError

__all__ = ["MetricsError", "MetricsLog", "Printer", "plot_run", "read_metrics", "step_line"]


class MetricsError(TrainError):
    """``metrics.jsonl`` cannot be written (a full or read-only disk); the message names the path and the bytes free."""


class MetricsLog:
    """``metrics.jsonl``: one JSON object per optimizer step of the live run, at full float precision.

    The trainer only appends to it. A resume at step ``s`` moves the records past ``s`` (written after the
    checkpoint it resumes from, then superseded by the steps it runs again) to an archive
    (:meth:`supersede_after`), so ``metrics.jsonl`` holds the live run and no record is ever dropped.
    """

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def supersede_after(self, step: int, archive: Path, tag: dict[str, Any]) -> list[int]:
        """Move the records past ``step`` (and torn lines, as ``{"unparseable_line": ...}``) to the end of
        ``archive``, each with ``"superseded": tag``; returns their steps.

        The archive is appended and fsynced before ``metrics.jsonl`` is replaced (atomically) by its records up to
        ``step``, kept byte for byte: a crash in between leaves a record in both files, never in neither.
        """
        if not self.enabled or not self.path.exists():
            return []
        kept: list[str] = []
        moved: list[dict[str, Any]] = []
        for line in self.path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                moved.append({"unparseable_line": line})
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
                kept.append(line)
            else:
                moved.append(record if isinstance(record, dict) else {"record": record})
        if not moved:
            return []
        try:
            archive.parent.mkdir(parents=True, exist_ok=True)
            with archive.open("a") as f:
                for record in moved:
                    f.write(json.dumps({**record, "superseded": tag}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
            with tmp.open("w") as f:
                f.write("".join(line + "\n" for line in kept))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            raise _write_error(self.path, e) from e
        return [r["step"] for r in moved if isinstance(r.get("step"), int)]

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line (after a newline if a killed run left a torn last line)."""
        if not self.enabled:
            return
        try:
            with self.path.open("a+b") as f:
                if f.tell() > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
                f.write((json.dumps(record) + "\n").encode())
                f.flush()
        except OSError as e:
            raise _write_error(self.path, e) from e


def _write_error(path: Path, error: OSError) -> MetricsError:
    try:
        free: int | str = shutil.disk_usage(path.parent).free
    except OSError:
        free = "an unknown number of"
    reason = os.strerror(error.errno) if error.errno else str(error)
    return MetricsError(f"cannot write {path}: {reason}; its file system has {free} bytes free")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All parseable records of a ``metrics.jsonl``: the live run (superseded records are in
    ``superseded/metrics.jsonl`` beside it, see :meth:`MetricsLog.supersede_after`)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class Printer:
    """Per-step lines on the printing rank; a tqdm bar on top when stdout is a terminal."""

    def __init__(self, enabled: bool, total: int, initial: int) -> None:
        self.enabled = enabled
        self.bar: Any = None
        if enabled and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False)

    def write(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def step(self, line: str) -> None:
        self.write(line)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def plot_run(metrics_path: Path, out: Path) -> Path:
    """``lr_loss.png``: LR (per group), train loss and val loss against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    steps = [r["step"] for r in records]
    fig, (ax_lr, ax_loss) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    n_groups = len(records[0]["lr"]) if records else 0
    names = records[0].get("lr_groups") if records else None
    for i in range(n_groups):
        ax_lr.plot(steps, [r["lr"][i] for r in records], label=names[i] if names else f"group {i}")
    ax_lr.set_ylabel("learning rate")
    ax_lr.legend(loc="best")
    ax_lr.grid(alpha=0.3)
    ax_loss.plot(steps, [r["loss"] for r in records], label="train loss", lw=1)
    evals = [r for r in records if "val_loss" in r]
    if evals:
        ax_loss.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val loss")
    ax_loss.set_xlabel("step (optimizer updates)")
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.legend(loc="best")
    ax_loss.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def step_line(record: dict[str, Any], num_iterations: int, dp: int = 1, tp: int = 1, pp: int = 1) -> str:
    """The per-step line (InfiniTrain's format), with the layout's data/tensor/pipeline-parallel sizes."""
    layout = f"DP={dp}" + (f" TP={tp}" if tp > 1 else "")
    layout += f" PP={pp}" if pp > 1 else ""
    line = (
        f"step {record['step']:4d}/{num_iterations} | train loss {record['loss']:.6f} | lr {record['lr'][0]:.2e} | "
        f"({record['ms']:.2f} ms | {record['tok_per_s']:.0f} tok/s | {layout})"
    )
    if "val_loss" in record:
        line += f" | val loss {record['val_loss']:.6f} | val ppl {record['val_ppl']:.2f}"
    return line + (" | skipped (overflow)" if record["skipped"] else "")
