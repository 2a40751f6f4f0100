"""The update's telemetry in ``metrics.jsonl`` (per-group grad norms, update ratios, the loss scale) and
``--tensorboard``, each against a direct computation: torch's norms of the gradients and of the change the
optimizer made, the GradScaler's own schedule, and the event files read back with TensorBoard's reader."""

from __future__ import annotations

import math
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from lrkit.train.arguments import config_from_args
from lrkit.train.errors import ConfigError
from lrkit.train.loop import setup, train, train_step
from lrkit.train.metrics import read_metrics
from lrkit.train.parallel import DistContext
from lrkit.train.shutdown import TrainingStopped
from lrkit.train.telemetry import group_labels
from lrkit.train.tensorboard import scalars
from tests.conftest import TINY, parse, torchrun, train_error_of, train_run

TWO_MICRO = ["--total-batch-size", str(2 * 2 * 32)]  # 2 micro-batches of 2 x 32 tokens per update
FOUR_MICRO = ["--total-batch-size", str(4 * 2 * 32)]
PP2_TP2_SP = ["--pipeline-parallel", "2", "--tensor-parallel", "2", "--sequence-parallel"]


def _norm64(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of the tensors as one vector, summed in float64 (a float32 sum over the model drifts by 1e-4)."""
    return torch.linalg.vector_norm(torch.cat([t.double().flatten() for t in tensors]))


def _direct_norms(tmp_path: Path, steps: int, *argv: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``steps`` updates of the tiny model through :func:`train_step`; each update's records, and the norms taken
    by hand around its ``optimizer.step()``: the gradients it saw, and the parameters before and after it."""
    config = config_from_args(parse(*TINY, "--run-dir", str(tmp_path), "--num-iterations", str(steps), *argv))
    t = setup(config, DistContext())
    real_step = t.step_optimizer
    direct: list[dict[str, Any]] = []

    def step_and_measure() -> Any:
        groups = [list(g["params"]) for g in t.optimizer.param_groups]
        before = [[p.detach().clone() for p in params] for params in groups]
        grads = [[p.grad.detach().clone() for p in params if p.grad is not None] for params in groups]
        out = real_step()
        delta = [_norm64([p.detach() - b for p, b in zip(params, old)]) for params, old in zip(groups, before)]
        theta = [_norm64(old) for old in before]
        total = torch.linalg.vector_norm(torch.stack(delta)) / torch.linalg.vector_norm(torch.stack(theta))
        direct.append(
            {
                "grad_norm_groups": [float(torch.nn.utils.get_total_norm(g)) for g in grads],
                "grad_norm": float(torch.nn.utils.get_total_norm([g for gs in grads for g in gs])),
                "update_ratio": [float(d / n) for d, n in zip(delta, theta)],
                "update_ratio_total": float(total),
            }
        )
        return out

    t.step_optimizer = step_and_measure
    records = [train_step(t) for _ in range(steps)]
    return records, direct


@pytest.mark.parametrize("groups", [[], ["--param-groups", "parts"]], ids=["decay-no_decay", "named-parts"])
def test_per_group_norms_equal_a_direct_computation(tmp_path: Path, groups: list[str]) -> None:
    """AdamW over nanoGPT's two groups (and the named parts): with clipping off the gradients the optimizer
    sees are the ones the record measures; ``update_ratio`` is ||θ' - θ|| / ||θ|| per group, taken by hand."""
    records, direct = _direct_norms(tmp_path, 3, "--grad-clip", "0", "--weight-decay", "0.1", *groups)
    for record, expected in zip(records, direct):
        assert len(record["update_ratio"]) == len(record["lr"]) == len(expected["update_ratio"])
        assert record["grad_norm_groups"] == pytest.approx(expected["grad_norm_groups"], rel=1e-5)
        assert record["grad_norm"] == pytest.approx(expected["grad_norm"], rel=1e-5)
        assert record["update_ratio"] == pytest.approx(expected["update_ratio"], rel=1e-5)
        assert record["update_ratio_total"] == pytest.approx(expected["update_ratio_total"], rel=1e-5)
        assert all(r > 0 for r in record["update_ratio"])
    assert "loss_scale" not in records[0]  # fp32: no GradScaler


@pytest.mark.parametrize("interval", [2, 0], ids=["every-2nd", "never"])
def test_update_ratio_interval_takes_the_ratio_on_every_nth_step_only(tmp_path: Path, interval: int) -> None:
    """``--update-ratio-interval N``: the steps that are multiples of N log the update ratio, equal to the one
    taken by hand; the others log none (and copy no parameters). Every step logs its groups' gradient norms."""
    records, direct = _direct_norms(tmp_path, 4, "--grad-clip", "0", "--update-ratio-interval", str(interval))
    for record, expected in zip(records, direct):
        assert record["grad_norm_groups"] == pytest.approx(expected["grad_norm_groups"], rel=1e-5)
        if interval and record["step"] % interval == 0:
            assert record["update_ratio"] == pytest.approx(expected["update_ratio"], rel=1e-5)
            assert record["update_ratio_total"] == pytest.approx(expected["update_ratio_total"], rel=1e-5)
        else:
            assert "update_ratio" not in record and "update_ratio_total" not in record
    assert [r["step"] for r in records if "update_ratio" in r] == ([2, 4] if interval else [])


def test_update_ratio_interval_must_be_a_count(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--update-ratio-interval = -1 must be an integer >= 0 \(0: never\)"):
        config_from_args(parse(*TINY, "--run-dir", str(tmp_path), "--update-ratio-interval", "-1"))


def test_group_grad_norms_are_taken_before_clipping(tmp_path: Path) -> None:
    """With a clip far below the gradient's norm, the groups' norms still add up to the unclipped total."""
    records = train_run(tmp_path, "--num-iterations", "2", "--grad-clip", "1e-3")
    for r in records:
        assert r["grad_norm"] > 1.0
        assert math.hypot(*r["grad_norm_groups"]) == pytest.approx(r["grad_norm"], rel=1e-5)


def test_loss_scale_follows_the_grad_scaler(tmp_path: Path) -> None:
    """fp16 on CPU with an inf gradient injected at update 2: ``loss_scale`` is the GradScaler's scale of each
    update's backward, starting at its initial scale and multiplied by its backoff factor after each skipped
    update; a skipped update moves no parameter (ratio 0)."""
    records = train_run(tmp_path, "--num-iterations", "4", "--dtype", "float16", "--inject-inf-grad-at", "2")
    oracle = torch.amp.GradScaler("cpu")
    expected, scale = [], oracle.get_scale()
    for r in records:
        expected.append(scale)
        if r["skipped"]:
            scale *= oracle.get_backoff_factor()
    assert records[1]["skipped"]
    assert [r["loss_scale"] for r in records] == expected
    assert records[1]["update_ratio"] == [0.0, 0.0] and records[1]["update_ratio_total"] == 0.0
    assert records[0]["update_ratio_total"] > 0


def test_group_labels_name_the_default_groups_and_the_named_ones() -> None:
    assert group_labels({"lr": [1.0, 2.0]}) == ["decay", "no_decay"]
    assert group_labels({"lr": [1.0, 2.0], "lr_groups": ["embed", "body"]}) == ["embed", "body"]
    assert group_labels({"lr": [1.0, 2.0, 3.0]}) == ["0", "1", "2"]


# --------------------------------------------------------------------------- --tensorboard


def _events(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files under ``log_dir``, by tag: ``[(step, value), ...]``."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    reader = accumulator.EventAccumulator(str(log_dir), size_guidance={accumulator.SCALARS: 0})
    reader.Reload()
    return {tag: [(e.step, e.value) for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}


def _as_float32(value: float) -> float:
    return float(torch.tensor(value, dtype=torch.float32))  # TensorBoard stores float32


def test_tensorboard_scalars_equal_the_metrics_records(tmp_path: Path) -> None:
    """The event files hold, step for step, the values of ``metrics.jsonl`` under their group's names."""
    pytest.importorskip("tensorboard")
    records = train_run(tmp_path, "--num-iterations", "4", "--tensorboard", "--eval-interval", "2",
                        "--weight-decay", "0.1", "--lr-scheduler", "cosine", "--warmup-steps", "2")  # fmt: skip
    events = _events(tmp_path / "tensorboard")
    steps = [r["step"] for r in records]
    named = {
        "lr/decay": [r["lr"][0] for r in records],
        "lr/no_decay": [r["lr"][1] for r in records],
        "grad_norm/total": [r["grad_norm"] for r in records],
        "grad_norm/decay": [r["grad_norm_groups"][0] for r in records],
        "update_ratio/no_decay": [r["update_ratio"][1] for r in records],
        "update_ratio/total": [r["update_ratio_total"] for r in records],
        "loss/train": [r["loss"] for r in records],
        "tokens": [r["tokens"] for r in records],
        "skipped": [float(r["skipped"]) for r in records],
    }
    for tag, values in named.items():
        assert events[tag] == [(s, _as_float32(v)) for s, v in zip(steps, values)], tag
    assert events["loss/val"] == [(r["step"], _as_float32(r["val_loss"])) for r in records if "val_loss" in r]
    assert len(events["loss/val"]) == 2
    assert len({v for _, v in events["lr/decay"]}) > 1  # the schedule moved
    for record in records:  # every scalar of the mapping, and nothing else
        step = record["step"]
        written = {tag: value for tag, pairs in events.items() for s, value in pairs if s == step}
        assert written == {tag: _as_float32(v) for tag, v in scalars(record).items()}


def test_tensorboard_resume_hides_the_replaced_steps(tmp_path: Path) -> None:
    """A resume from step 2 of a 4-step run rewrites steps 3 and 4: TensorBoard shows each step once (the
    writer purges the old timeline's), and the values are the resumed run's ``metrics.jsonl``."""
    pytest.importorskip("tensorboard")
    board = tmp_path / "board"
    flags = ["--num-iterations", "4", "--save-interval", "2", "--keep-last", "4", "--tensorboard",
             "--tensorboard-dir", str(board)]  # fmt: skip
    train_run(tmp_path / "run", *flags)
    checkpoint = next(p for p in (tmp_path / "run" / "checkpoints").iterdir() if "00000002" in p.name)
    records = train_run(tmp_path / "run", *flags, "--resume", str(checkpoint))
    assert not (tmp_path / "run" / "tensorboard").exists()
    losses = _events(board)["loss/train"]
    assert [s for s, _ in losses] == [1, 2, 3, 4]
    assert losses == [(r["step"], _as_float32(r["loss"])) for r in records]


class _SignalAfter:
    """A stand-in for :class:`lrkit.train.shutdown.Shutdown`: SIGTERM arrives once ``steps`` steps are done."""

    def __init__(self, metrics: Path, steps: int) -> None:
        self.metrics, self.steps = metrics, steps

    @property
    def requested(self) -> int:
        done = len(read_metrics(self.metrics)) if self.metrics.exists() else 0
        return int(signal.SIGTERM) if done >= self.steps else 0


def test_tensorboard_events_are_on_disk_after_a_clean_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal stops the run after step 3 of 50: the writer is closed on the way out, and every scalar of the
    steps done is in the event files."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    closed: list[str] = []
    real_close = SummaryWriter.close

    def close(writer: SummaryWriter) -> None:
        closed.append(writer.log_dir)
        real_close(writer)

    monkeypatch.setattr(SummaryWriter, "close", close)
    args = parse(*TINY, "--run-dir", str(tmp_path), "--num-iterations", "50", "--tensorboard", "--save-interval", "0")
    with pytest.raises(TrainingStopped):
        train(args, DistContext(), _SignalAfter(tmp_path / "metrics.jsonl", 3))  # type: ignore[arg-type]
    assert closed == [str(tmp_path / "tensorboard")]
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    events = _events(tmp_path / "tensorboard")
    for record in records:
        step = record["step"]
        written = {tag: value for tag, pairs in events.items() for s, value in pairs if s == step}
        assert written == {tag: _as_float32(v) for tag, v in scalars(record).items()}


def test_tensorboard_without_the_package_fails_at_startup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    err = train_error_of(tmp_path, "--tensorboard", capsys=capsys)
    assert "--tensorboard needs the tensorboard package" in err
    assert "pip install 'tensorboard>=2.14'" in err
    assert not (tmp_path / "tensorboard").exists()


def test_tensorboard_dir_needs_tensorboard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = train_error_of(tmp_path, "--tensorboard-dir", str(tmp_path / "tb"), capsys=capsys)
    assert f"--tensorboard-dir {tmp_path / 'tb'} needs --tensorboard" in err


# --------------------------------------------------------------------------- the layouts


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize(
    ("nproc", "layout", "single"),
    [
        (2, ["--fsdp"], ["--batch-size", "4"]),
        (2, ["--tensor-parallel", "2", "--sequence-parallel"], []),
        (2, ["--pipeline-parallel", "2", *TWO_MICRO], TWO_MICRO),
        (2, ["--zero-stage", "1"], ["--batch-size", "4"]),
        (4, ["--model", "llama3", *PP2_TP2_SP, *TWO_MICRO], ["--model", "llama3", *TWO_MICRO]),
        (4, ["--tensor-parallel", "2", "--zero-stage", "1", *FOUR_MICRO], FOUR_MICRO),
    ],
    ids=["fsdp2", "tp2-sp", "pp2-tied", "zero1", "pp2-tp2-sp-llama3", "tp2-dp2-zero1"],
)
def test_norms_on_several_ranks_equal_the_single_process_run(
    tmp_path: Path, nproc: int, layout: list[str], single: list[str]
) -> None:
    """The same updates on gloo ranks give the single process's per-group norms: FSDP2 and ZeRO-1 with 2
    sequences per rank against 4 in one process; TP with the same batch; two pipeline stages holding GPT-2's
    tied embedding both; and on 4 ranks, tensor-parallel pipeline stages, and ZeRO-1 over DTensors. DTensor
    shards, replicated copies, partial gradients and the tied weight's copy each count once."""
    flags = ["--num-iterations", "3", "--weight-decay", "0.1"]
    torchrun(nproc, "--run-dir", str(tmp_path / "dist"), *flags, *layout)
    distributed = read_metrics(tmp_path / "dist" / "metrics.jsonl")
    reference = train_run(tmp_path / "one", *flags, *single)
    assert len(distributed) == len(reference) == 3
    for d, r in zip(distributed, reference):
        assert d["grad_norm"] == pytest.approx(r["grad_norm"], rel=1e-4)
        assert d["grad_norm_groups"] == pytest.approx(r["grad_norm_groups"], rel=1e-4)
        assert d["update_ratio"] == pytest.approx(r["update_ratio"], rel=1e-4)
        assert d["update_ratio_total"] == pytest.approx(r["update_ratio_total"], rel=1e-4)
