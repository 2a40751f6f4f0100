"""``--ema`` and ``--average-last`` (lrkit.train.averaging): torch.optim.swa_utils as the oracle over the weights
the run saved after each step, a hand-made mean of them, exact resume in both checkpoint formats, the evaluation
beside the raw weights, and the errors."""

from __future__ import annotations

import copy
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, get_swa_multi_avg_fn

from lrkit.train import checkpoint as ckpt
from lrkit.train import loop as train_loop
from lrkit.train.averaging import AVG_PREFIX, EMA_PREFIX, Averages, check_layout, window_start
from lrkit.train.checkpoint_command import inspect_checkpoint
from lrkit.train.components import evaluate
from lrkit.train.config import TrainConfig
from lrkit.train.errors import ConfigError, TrainError
from lrkit.train.metrics import read_metrics
from lrkit.train.parallel import DistContext
from tests.conftest import TINY, parse, torchrun, train_error_of, train_run

T = 8  #: steps of the runs
FLAGS = ["--num-iterations", str(T), "--lr", "0.01", "--ema", "0.7", "--average-last", "3"]


def _initial_model(tmp_path: Path, *argv: str) -> torch.nn.Module:
    """The model at step 0 of a run with ``argv``: theta_0, as the trainer builds it."""
    config = TrainConfig.from_args(parse(*TINY, "--run-dir", str(tmp_path / "init"), *argv))
    return train_loop.setup(config, DistContext()).pm.raw


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(path)["model"]  # type: ignore[no-any-return]


def _averages(path: Path) -> dict[str, Any]:
    """The averages of checkpoint ``path`` (either format) as ``{"ema": {name: tensor}, "avg": ..., counters}``."""
    payload = ckpt.load_checkpoint(path)
    state = dict(payload["averages"])
    if isinstance(payload["model"], ckpt.ShardedState):
        sharded = payload["model"]
        for key, prefix in (("ema", EMA_PREFIX), ("avg", AVG_PREFIX)):
            target = {prefix + n: torch.empty(s) for n, s in sharded.shapes(prefix).items()}
            sharded.load(target, no_dist=True)
            state[key] = {k[len(prefix) :]: v for k, v in target.items()} or None
    return state


@pytest.fixture(scope="module")
def every_step(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]], torch.nn.Module]:
    """A run of T steps saving every step (full format): its directory, records and theta_0."""
    tmp = tmp_path_factory.mktemp("every")
    records = train_run(tmp / "run", *FLAGS, "--save-interval", "1", "--keep-last", "20", "--eval-interval", "4")
    return tmp / "run", records, _initial_model(tmp, *FLAGS)


def _checkpoint(run: Path, step: int) -> Path:
    return ckpt.checkpoint_path(run, step)


def test_ema_equals_torch_averaged_model(every_step: Any) -> None:
    """After each step s the saved EMA is AveragedModel's with get_ema_multi_avg_fn(0.7), fed theta_0 and then the
    weights after steps 1..s: bit for bit."""
    run, _, initial = every_step
    model = copy.deepcopy(initial)
    oracle = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.7))
    oracle.update_parameters(model)  # theta_0
    names = [n for n, _ in model.named_parameters()]
    for step in range(1, T + 1):
        model.load_state_dict(_weights(_checkpoint(run, step)))
        oracle.update_parameters(model)
        saved = _averages(_checkpoint(run, step))
        assert saved["ema_updates"] == step
        expected = dict(zip(names, (p.detach() for p in oracle.module.parameters())))
        assert list(saved["ema"]) == names
        for name in names:
            assert torch.equal(saved["ema"][name], expected[name]), (step, name)
    counters = {"ema_decay": 0.7, "ema_updates": T, "average_last": 3, "avg_first": 6, "avg_count": 3}
    assert inspect_checkpoint(_checkpoint(run, T))["averages"] == counters  # lrkit checkpoint inspect shows them


def test_average_last_equals_the_mean_of_the_last_steps(every_step: Any) -> None:
    """--average-last 3 of 8 steps: the mean of the weights after steps 6, 7, 8; AveragedModel's SWA average of the
    same (bit for bit) and the sum divided by the count (to rounding). Nothing before step 6."""
    run, _, initial = every_step
    first = window_start(T, 3)
    assert first == 6
    oracle = AveragedModel(copy.deepcopy(initial), multi_avg_fn=get_swa_multi_avg_fn())  # the uniform running mean
    model = copy.deepcopy(initial)
    snapshots = []
    for step in range(1, T + 1):
        saved = _averages(_checkpoint(run, step))
        if step < first:
            assert saved["avg_count"] == 0
            continue
        weights = _weights(_checkpoint(run, step))
        snapshots.append(weights)
        model.load_state_dict(weights)
        oracle.update_parameters(model)
        assert saved["avg_count"] == step - first + 1
        by_hand = {n: torch.stack([s[n] for s in snapshots]).sum(0) / len(snapshots) for n in saved["avg"]}
        for (name, value), expected in zip(saved["avg"].items(), oracle.module.parameters()):
            assert torch.equal(value, expected.detach()), (step, name)
            torch.testing.assert_close(value, by_hand[name], rtol=1e-6, atol=1e-7)


def test_evaluations_report_the_averages_beside_the_weights(every_step: Any) -> None:
    """val_loss_ema at every evaluation, val_loss_avg once the window has a step; each is evaluate() of a model
    holding those weights (the run's own evaluation of the raw weights checks the function)."""
    run, records, initial = every_step
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evals] == [4, 8]
    assert "val_loss_avg" not in evals[0] and "val_loss_ema" in evals[0]
    last = evals[1]
    assert {"val_loss_ema", "val_loss_ema_se", "val_loss_avg", "val_loss_avg_se"} <= set(last)
    config = TrainConfig.from_args(parse(*TINY, "--run-dir", str(run.parent / "eval"), *FLAGS))
    t = train_loop.setup(config, DistContext())
    ctx, saved = DistContext(), _averages(_checkpoint(run, T))

    def loss_with(weights: dict[str, torch.Tensor]) -> tuple[float, float]:
        t.pm.raw.load_state_dict(weights, strict=False)
        return evaluate(t.pm, t.val_tokens, t.config, ctx, t.autocast_dtype)

    assert loss_with(_weights(_checkpoint(run, T))) == (last["val_loss"], last["val_loss_se"])
    assert loss_with(saved["ema"]) == (last["val_loss_ema"], last["val_loss_ema_se"])
    assert loss_with(saved["avg"]) == (last["val_loss_avg"], last["val_loss_avg_se"])
    assert last["val_loss_ema"] != last["val_loss"]


def test_evaluating_an_average_leaves_the_weights_bit_equal(tmp_path: Path) -> None:
    config = TrainConfig.from_args(parse(*TINY, "--run-dir", str(tmp_path), *FLAGS)).resolve()
    t = train_loop.setup(config, DistContext())
    averages = t.averages
    assert averages is not None
    with torch.no_grad():
        for p in t.pm.raw.parameters():
            p.add_(1.0)  # the weights move away from the EMA's theta_0
    before = {k: v.clone() for k, v in t.pm.raw.state_dict().items()}
    seen: list[bool] = []

    def probe() -> tuple[float, float]:
        seen.append(all(torch.equal(p, e) for p, e in zip(t.pm.raw.parameters(), averages.ema or [])))
        return 1.0, 0.0

    assert averages.evaluate(probe) == {"val_loss_ema": 1.0, "val_loss_ema_se": 0.0}  # no avg before the window
    assert seen == [True]
    assert all(torch.equal(v, before[k]) for k, v in t.pm.raw.state_dict().items())


@pytest.mark.parametrize("at", [3, 7])  # before the window (6..8), and inside it
def test_resume_continues_the_averages_exactly(every_step: Any, tmp_path: Path, at: int) -> None:
    run, records, _ = every_step
    resumed = train_run(tmp_path, *FLAGS, "--save-interval", "8", "--eval-interval", "4",
                        "--resume", str(_checkpoint(run, at)))  # fmt: skip
    straight, again = _averages(_checkpoint(run, T)), _averages(_checkpoint(tmp_path, T))
    for key in ("ema", "avg"):
        assert straight[key].keys() == again[key].keys()
        assert all(torch.equal(straight[key][n], again[key][n]) for n in straight[key])
    assert (again["ema_updates"], again["avg_count"]) == (T, 3)
    keys = ("val_loss", "val_loss_ema", "val_loss_avg")
    assert [r.get(k) for k in keys for r in resumed if r["step"] == T] == [records[-1].get(k) for k in keys]


def test_sharded_checkpoints_carry_the_averages_and_resume_exactly(tmp_path: Path) -> None:
    """--checkpoint-format sharded writes ema/<name> and avg/<name> beside model/<name>; a resume at step 7 (inside
    the window) ends with the straight run's averages, bit for bit."""
    flags = [*FLAGS, "--checkpoint-format", "sharded", "--keep-last", "20"]
    train_run(tmp_path / "a", *flags, "--save-interval", "1")
    train_run(tmp_path / "b", *flags, "--save-interval", "8", "--resume", str(ckpt.checkpoint_dir(tmp_path / "a", 7)))
    straight = _averages(ckpt.checkpoint_dir(tmp_path / "a", T))
    again = _averages(ckpt.checkpoint_dir(tmp_path / "b", T))
    model = _initial_model(tmp_path, *FLAGS)
    assert list(straight["ema"]) == [n for n, _ in model.named_parameters()]
    for key in ("ema", "avg"):
        assert all(torch.equal(straight[key][n], again[key][n]) for n in straight[key])
    train_run(tmp_path / "full", *FLAGS, "--save-interval", "8")
    full = _averages(_checkpoint(tmp_path / "full", T))
    assert all(torch.equal(full["ema"][n], straight["ema"][n]) for n in full["ema"])  # the same in either format


def test_skipped_update_leaves_the_ema(tmp_path: Path) -> None:
    """An fp16 update skipped for overflow (step 3) is not folded into the EMA; the average still counts it."""
    records = train_run(tmp_path, "--num-iterations", "5", "--dtype", "float16", "--inject-inf-grad-at", "3",
                        "--ema", "0.5", "--average-last", "5", "--save-interval", "5")  # fmt: skip
    assert [r["skipped"] for r in records] == [False, False, True, False, False]
    saved = _averages(_checkpoint(tmp_path, 5))
    assert (saved["ema_updates"], saved["avg_count"]) == (4, 5)


def test_resume_of_a_checkpoint_without_averages_starts_them_from_its_weights(tmp_path: Path) -> None:
    train_run(tmp_path, "--num-iterations", "2", "--save-interval", "2")
    ckpt_path = _checkpoint(tmp_path, 2)
    config = TrainConfig.from_args(parse(*TINY, "--run-dir", str(tmp_path), "--num-iterations", "4", "--ema", "0.9",
                                         "--resume", str(ckpt_path)))  # fmt: skip
    t = train_loop.setup(config, DistContext())
    assert t.averages is not None and t.averages.ema is not None
    weights = _weights(ckpt_path)
    names = [n for n, _ in t.pm.raw.named_parameters()]
    assert all(torch.equal(e, weights[n]) for n, e in zip(names, t.averages.ema))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ema", "1"], "--ema = 1.0 must be a number in (0, 1)"),
        (["--ema", "0"], "--ema = 0.0 must be a number in (0, 1)"),
        (["--ema", "nan"], "--ema = nan must be a number in (0, 1)"),
        (["--average-last", "0"], "--average-last = 0 must be an integer >= 1"),
    ],
)
def test_bad_values_name_the_flag(tmp_path: Path, argv: list[str], message: str, capsys: Any) -> None:
    assert message in train_error_of(tmp_path, *argv, capsys=capsys)


def test_bad_toml_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"\[averaging\] ema = 2 must be a number in \(0, 1\)"):
        TrainConfig.from_toml("[averaging]\nema = 2\n", source="run.toml")


def test_pipeline_stages_are_refused() -> None:
    config = TrainConfig.from_args(parse("--ema", "0.9", "--pipeline-parallel", "2"))
    with pytest.raises(TrainError, match=r"--ema 0.9 is not supported with --pipeline-parallel 2 \(each stage"):
        check_layout(config)
    check_layout(TrainConfig.from_args(parse("--pipeline-parallel", "2")))  # no averaging: any layout


def test_window_start() -> None:
    assert [window_start(10, n) for n in (1, 3, 10, 50)] == [10, 8, 1, 1]


def test_averages_refuse_a_checkpoint_of_another_shape() -> None:
    model = torch.nn.Linear(2, 3)
    pm = types.SimpleNamespace(
        raw=model, checkpoint_parameters=lambda: [(n, p, True) for n, p in model.named_parameters()]
    )
    averages = Averages(pm, 0.5, None, 4)  # type: ignore[arg-type]
    state = averages.state_dict()
    state["ema"]["weight"] = torch.zeros(4, 4)
    with pytest.raises(ckpt.CheckpointError, match=r"ema/weight: checkpoint \[4, 4\], model \[3, 2\]"):
        averages.load_state_dict(state)


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_keeps_the_averages_and_resumes_them_exactly(tmp_path: Path) -> None:
    """2 DDP ranks (sharded checkpoints, auto): the averages are evaluated, saved, and a resume at step 4 ends with
    the straight run's averages, bit for bit; a full checkpoint of the same run holds the same EMA."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    torchrun(2, *FLAGS, "--eval-interval", "8", "--run-dir", str(a), "--save-interval", "4")
    torchrun(2, *FLAGS, "--run-dir", str(b), "--save-interval", "8", "--resume", str(ckpt.checkpoint_dir(a, 4)))
    torchrun(2, *FLAGS, "--run-dir", str(c), "--save-interval", "8", "--checkpoint-format", "full")
    last = read_metrics(a / "metrics.jsonl")[-1]
    assert {"val_loss_ema", "val_loss_avg"} <= set(last)
    straight, again = _averages(ckpt.checkpoint_dir(a, T)), _averages(ckpt.checkpoint_dir(b, T))
    full = _averages(_checkpoint(c, T))
    for key in ("ema", "avg"):
        assert straight[key].keys() == again[key].keys() == full[key].keys()
        assert all(torch.equal(straight[key][n], again[key][n]) for n in straight[key])
        assert all(torch.equal(straight[key][n], full[key][n]) for n in straight[key])


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("layout", [["--fsdp"], ["--tensor-parallel", "2"]])
def test_sharded_parameters_keep_their_averages_as_dtensors(tmp_path: Path, layout: list[str]) -> None:
    """FSDP2 and TP over 2 ranks: the averages are DTensors like the parameters. A sharded resume at step 4 ends
    with the straight run's averages, bit for bit; a full checkpoint of the same run gathers the same tensors; the
    evaluations add val_loss_ema and val_loss_avg; and the EMA is close to a DDP run's (other reductions)."""
    a, b, c, d = (tmp_path / n for n in "abcd")
    torchrun(2, *FLAGS, *layout, "--eval-interval", "8", "--run-dir", str(a), "--save-interval", "4")
    torchrun(
        2, *FLAGS, *layout, "--run-dir", str(b), "--save-interval", "8", "--resume", str(ckpt.checkpoint_dir(a, 4))
    )
    torchrun(2, *FLAGS, *layout, "--run-dir", str(c), "--save-interval", "8", "--checkpoint-format", "full")
    last = read_metrics(a / "metrics.jsonl")[-1]
    assert {"val_loss_ema", "val_loss_avg"} <= set(last)
    straight, again = _averages(ckpt.checkpoint_dir(a, T)), _averages(ckpt.checkpoint_dir(b, T))
    full = _averages(_checkpoint(c, T))
    for key in ("ema", "avg"):
        assert straight[key].keys() == again[key].keys() == full[key].keys()
        assert all(torch.equal(straight[key][n], again[key][n]) for n in straight[key])
        assert all(torch.equal(straight[key][n], full[key][n]) for n in straight[key])
    if layout == ["--fsdp"]:
        torchrun(2, *FLAGS, "--run-dir", str(d), "--save-interval", "8")
        ddp = _averages(ckpt.checkpoint_dir(d, T))
        for n in ddp["ema"]:
            torch.testing.assert_close(straight["ema"][n], ddp["ema"][n], rtol=1e-3, atol=1e-4)
