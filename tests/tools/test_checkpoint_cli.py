"""``lrkit checkpoint inspect`` and ``lrkit checkpoint export``: the LRs inspect reports are the ones the trainer
uses (checked against its own metrics.jsonl and a resume), export gives the saved weights from either format,
and a path that is no checkpoint exits 2 naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model

import lrkit
from lrkit import cli
from lrkit.train import checkpoint as ckpt
from lrkit.train.checkpoint_command import inspect_checkpoint
from lrkit.train.metrics import read_metrics
from lrkit.train.models import build_model
from tests.conftest import CHAINED, torchrun, train_run

#: Schedules whose rebuilt LRs must match the trainer's: a token-clock cosine over named groups (one at half
#: the LR) with a weight-decay schedule; PyTorch's own chained classes (replayed on resume) with a grad-clip
#: schedule; and a plateau schedule, whose next LR depends on the loss.
RUNS = {
    "tokens-groups-wd": ["--lr-scheduler", "cosine", "--lr", "1e-3", "--warmup", "128tok", "--total", "448tok",
                         "--min-lr", "1e-4", "--param-groups", "parts", "--group-lr", "head=0.5",
                         "--wd-schedule", "cosine:0.1:0.01:8"],
    "torch-chained": ["--lr-scheduler", json.dumps(CHAINED), "--scheduler-backend", "torch",
                      "--grad-clip-schedule", "linear:1.0:0.5:8"],
    "plateau": ["--lr-scheduler", "reduce_lr_on_plateau", "--patience", "1", "--lr", "1e-3"],
}  # fmt: skip
STEPS = ["--num-iterations", "5", "--save-interval", "2", "--keep-last", "5"]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["checkpoint", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _lrs(run_dir: Path) -> dict[int, list[float]]:
    return {r["step"]: r["lr"] for r in read_metrics(run_dir / "metrics.jsonl")}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-process run with the full format: checkpoints at steps 2, 4 and 5."""
    run_dir = tmp_path_factory.mktemp("full")
    train_run(run_dir, *STEPS, *RUNS["tokens-groups-wd"])
    return run_dir


# ----------------------------------------------------------------------------- inspect


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_the_lr_now_and_next_are_the_trainers(tmp_path: Path, name: str, full_run: Path) -> None:
    """For the checkpoint of step k, inspect's LR now is the LR metrics.jsonl has for step k + 1, and its LR
    next the one of step k + 2; a resume from the last checkpoint uses inspect's LR now for its first step."""
    run_dir = full_run if name == "tokens-groups-wd" else tmp_path / "run"
    if run_dir != full_run:
        train_run(run_dir, *STEPS, *RUNS[name])
    lrs = _lrs(run_dir)
    checked = {"now": 0, "next": 0}
    infos: dict[int, dict[str, Any]] = {}
    for path in ckpt.list_checkpoints(run_dir):
        info = infos[ckpt.checkpoint_step(path) or 0] = inspect_checkpoint(path)
        k, lr = info["step"], info["lr"]
        assert "error" not in lr, lr
        assert (lr["now_step"], lr["next_step"]) == (k + 1, k + 2)
        if k + 1 in lrs:
            assert lr["now"] == lrs[k + 1]
            checked["now"] += 1
        if name == "plateau":
            assert lr["next"] is None and "follows the loss" in lr["next_note"]
        elif k + 2 in lrs:
            assert lr["next"] == lrs[k + 2]
            checked["next"] += 1
    assert sorted(infos) == [2, 4, 5] and checked["now"] == 2 and checked["next"] == (0 if name == "plateau" else 1)
    if name == "tokens-groups-wd":
        assert infos[2]["lr"]["groups"][:2] == ["embed", "body"]
        assert infos[5]["clock"] == {"steps": 5, "tokens": 320, "samples": 10}
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed)
    after = {r["step"]: r for r in train_run(resumed, *RUNS[name], "--resume", "auto", "--num-iterations", "6")}
    assert after[6]["lr"] == infos[5]["lr"]["now"]


def _parameters(name: str = "gpt2", preset: str = "tiny") -> int:
    return sum(p.numel() for p in build_model(name, preset).parameters())  # a tied weight counts once


@pytest.mark.slow
def test_inspect_prints_every_field_and_the_same_as_json(full_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "inspect", str(full_run))  # a run directory: its newest checkpoint
    assert code == 0, err
    lines = {line[:13].strip(): line[13:] for line in out.splitlines() if line[:1] not in ("", " ")}
    newest = ckpt.checkpoint_path(full_run, 5)
    assert lines["checkpoint"] == str(newest) and lines["format"] == "full" and lines["step"] == "5"
    assert lines["tokens"] == "320"
    assert lines["clocks"] == "steps 5, tokens 320, samples 10 (the schedule counts tokens)"
    assert lines["lr now"].startswith("embed ") and lines["lr now"].endswith("(step 6, the next update)")
    assert lines["lr next"].startswith("embed ") and lines["lr next"].endswith("(step 7)")
    assert json.loads(lines["spec"])["type"] == "Clocked"
    assert lines["model"] == f"gpt2 tiny, {_parameters():,} parameters"
    assert lines["layout"] == "single (world_size 1, dp 1, tp 1, pp 1, grad_accum 1)"
    assert lines["size"].endswith(f"({newest.stat().st_size} bytes)")
    assert '  [model] name="gpt2" preset="tiny"' in out and '  [schedule] lr_scheduler="cosine"' in out

    step4 = ckpt.checkpoint_path(full_run, 4)
    code, out, _ = _cli(capsys, "inspect", str(step4), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["path"] == str(step4) and info["format"] == "full" and info["step"] == 4 and info["tokens"] == 256
    assert info["clock"] == {"steps": 4, "tokens": 256, "samples": 8}
    assert info["spec"]["type"] == "Clocked" and info["backend"] == "lrkit" and info["tokens_per_step"] == 64
    assert info["lr"]["now"] == _lrs(full_run)[5] and info["lr"]["next"] is not None
    assert info["layout"]["name"] == "single" and info["parameters"] == _parameters()
    assert info["size"]["bytes"] == step4.stat().st_size and info["config"]["preset"] == "tiny"
    assert info["train_config"]["model"]["name"] == "gpt2" and info["skipped"] == []


def test_a_path_that_is_no_checkpoint_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    code, out, err = _cli(capsys, "inspect", str(missing))
    assert code == 2 and out == ""
    assert f"lrkit checkpoint inspect: error: {missing} does not exist; expected a checkpoint" in err
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    code, _, err = _cli(capsys, "inspect", str(text))
    assert code == 2 and f"{text} is not a usable lrkit checkpoint" in err and "expected a checkpoint" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _cli(capsys, "export", str(empty), "-o", str(tmp_path / "m.safetensors"))
    assert code == 2 and f"{empty} is a directory without checkpoints" in err
    broken = ckpt.checkpoint_path(tmp_path / "run", 3)
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"PK\x03\x04 truncated")
    code, _, err = _cli(capsys, "inspect", str(tmp_path / "run"))
    assert code == 2 and "none of the 1 checkpoint(s)" in err and "step_00000003.pt" in err
    assert not (tmp_path / "m.safetensors").exists()


# ----------------------------------------------------------------------------- export


def _check_export(file: Path, saved: dict[str, torch.Tensor], step: int, source: Path) -> dict[str, str]:
    """``file`` holds ``saved`` (the trainer's model state) with the tied weight once; its metadata."""
    tensors = load_file(file)
    with safe_open(str(file), "pt") as f:
        meta = f.metadata()
    tied = json.loads(meta["tied"])
    assert tied == {"lm_head.weight": "transformer.wte.weight"}
    assert set(tensors) | set(tied) == set(saved)
    for key, value in saved.items():
        assert torch.equal(tensors[tied.get(key, key)], value), key
    assert meta["step"] == str(step) and meta["source"] == str(source.resolve())
    assert (meta["model"], meta["preset"], meta["lrkit_version"]) == ("gpt2", "tiny", lrkit.__version__)
    model = build_model("gpt2", "tiny")
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert missing == ["lm_head.weight"] and unexpected == []
    assert model.lm_head.weight is model.transformer.wte.weight  # the tie holds: the head is the saved one
    assert torch.equal(model.lm_head.weight, saved["lm_head.weight"])
    assert load_model(build_model("gpt2", "tiny"), file) == (set(), [])  # safetensors' loader, strict
    return meta


@pytest.mark.slow
def test_export_of_a_full_checkpoint_is_the_saved_model(
    full_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = ckpt.checkpoint_path(full_run, 4)
    out = tmp_path / "model.safetensors"
    code, stdout, err = _cli(capsys, "export", str(source), "-o", str(out))
    assert code == 0, err
    assert stdout.startswith(f"wrote {out}: 35 tensors, {_parameters():,} parameters")
    assert "tied: lm_head.weight -> transformer.wte.weight" in stdout
    meta = _check_export(out, ckpt.load_checkpoint(source)["model"], 4, source)
    assert meta["checkpoint_format"] == "full"

    before = out.read_bytes()
    code, _, err = _cli(capsys, "export", str(full_run), "-o", str(out))  # exists: refused, untouched
    assert code == 2 and f"{out} exists; pass --force" in err and out.read_bytes() == before
    code, _, err = _cli(capsys, "export", str(full_run), "-o", str(out), "--force")  # the newest, step 5
    assert code == 0, err
    _check_export(out, ckpt.load_checkpoint(ckpt.checkpoint_path(full_run, 5))["model"], 5, full_run / "checkpoints"
                  / "step_00000005.pt")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temporary file left


@pytest.mark.slow
@pytest.mark.distributed
def test_a_sharded_and_a_full_checkpoint_of_one_fsdp2_run_export_the_same_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two identical 2-rank FSDP2 runs, one saving sharded checkpoints and one full ones, hold the same weights
    at step 2: their exports are equal, and equal to the full checkpoint's model state."""
    common = ["--fsdp", "--num-iterations", "3", "--save-interval", "2", "--lr-scheduler", "cosine",
              "--warmup-steps", "2", "--total-steps", "6"]  # fmt: skip
    exports = {}
    for fmt in ("sharded", "full"):
        run_dir = tmp_path / fmt
        torchrun(2, "--run-dir", str(run_dir), "--checkpoint-format", fmt, *common)
        source = ckpt.find_checkpoint(run_dir, 2)
        assert source is not None and source.is_dir() == (fmt == "sharded")
        code, out, err = _cli(capsys, "inspect", str(source), "--json")
        assert code == 0, err
        info = json.loads(out)
        assert info["format"] == fmt and info["layout"]["name"] == "FSDP2" and info["layout"]["world_size"] == 2
        assert info["lr"]["now"] == _lrs(run_dir)[3] and info["parameters"] == _parameters()
        exports[fmt] = tmp_path / f"{fmt}.safetensors"
        code, _, err = _cli(capsys, "export", str(source), "-o", str(exports[fmt]))
        assert code == 0, err
    full_model = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "full", 2))["model"]
    assert not torch.equal(full_model["transformer.wte.weight"], build_model("gpt2", "tiny").transformer.wte.weight)
    _check_export(exports["full"], full_model, 2, ckpt.checkpoint_path(tmp_path / "full", 2))
    meta = _check_export(exports["sharded"], full_model, 2, ckpt.checkpoint_dir(tmp_path / "sharded", 2))
    assert meta["checkpoint_format"] == "sharded"
    a, b = load_file(exports["sharded"]), load_file(exports["full"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_sharded_checkpoint_of_one_process_inspects_and_exports_as_the_full_one(
    full_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run of ``full_run`` again, saving sharded checkpoints: the same LRs, and the same weights exported."""
    run_dir = tmp_path / "sharded"
    train_run(run_dir, *STEPS, *RUNS["tokens-groups-wd"], "--checkpoint-format", "sharded")
    sharded, full = ckpt.checkpoint_dir(run_dir, 4), ckpt.checkpoint_path(full_run, 4)
    info = inspect_checkpoint(sharded)
    assert info["format"] == "sharded" and info["lr"] == inspect_checkpoint(full)["lr"]
    assert info["lr"]["now"] == _lrs(run_dir)[5] and info["parameters"] == _parameters()
    assert info["size"]["bytes"] == sum(f.stat().st_size for f in sharded.iterdir())
    out = tmp_path / "model.safetensors"
    code, _, err = _cli(capsys, "export", str(sharded), "-o", str(out))
    assert code == 0, err
    meta = _check_export(out, ckpt.load_checkpoint(full)["model"], 4, sharded)
    assert meta["checkpoint_format"] == "sharded"


# ----------------------------------------------------------------------------- average


def _model_of(path: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(path)["model"]  # type: ignore[no-any-return]


def test_average_is_the_mean_of_the_checkpoints_tensors(
    full_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The uniform mean of steps 2, 4, 5 (torch.stack(...).mean(0) as the oracle), a full checkpoint of step 5 that
    inspect, export and a resume read; with --weights the weighted mean; a .safetensors output the same tensors."""
    paths = [ckpt.checkpoint_path(full_run, s) for s in (2, 4, 5)]
    models = [_model_of(p) for p in paths]
    out = tmp_path / "mean.pt"
    code, printed, err = _cli(capsys, "average", *map(str, paths), "-o", str(out))
    assert code == 0, err
    assert f"wrote {out} (full checkpoint): the mean of 3 checkpoint(s)" in printed
    merged = ckpt.load_checkpoint(out)
    assert merged["model"].keys() == models[0].keys()
    for name in models[0]:
        expected = torch.stack([m[name] for m in models]).mean(0)
        torch.testing.assert_close(merged["model"][name], expected, rtol=1e-6, atol=1e-8)
        assert not torch.equal(merged["model"][name], models[2][name]) or torch.equal(models[0][name], models[2][name])
    assert merged["step"] == 5 and [s["step"] for s in merged["averaged_from"]] == [2, 4, 5]
    assert inspect_checkpoint(out)["step"] == 5
    records = train_run(tmp_path / "resumed", "--num-iterations", "6", *RUNS["tokens-groups-wd"], "--resume", str(out))
    assert [r["step"] for r in records] == [6]
    weighted = tmp_path / "weighted.safetensors"
    code, _, err = _cli(capsys, "average", str(paths[0]), str(paths[2]), "-o", str(weighted), "--weights", "3", "1")
    assert code == 0, err
    tensors = load_file(str(weighted))
    for name, value in tensors.items():
        torch.testing.assert_close(value, 0.75 * models[0][name] + 0.25 * models[2][name], rtol=1e-6, atol=1e-8)
    assert "lm_head.weight" not in tensors  # the tied weight once, as export writes it
    exported = tmp_path / "exported.safetensors"
    assert _cli(capsys, "export", str(out), "-o", str(exported))[0] == 0
    assert load_file(str(exported)).keys() == tensors.keys()


def test_average_of_two_checkpoints_is_bit_equal_to_their_mean(full_run: Path, tmp_path: Path) -> None:
    from lrkit.train.checkpoint_command import average_checkpoints

    paths = [ckpt.checkpoint_path(full_run, s) for s in (4, 5)]
    out = tmp_path / "two.pt"
    average_checkpoints(paths, out)
    a, b = (_model_of(p) for p in paths)
    merged = _model_of(out)
    assert all(torch.equal(merged[k], (a[k] + b[k]) / 2) for k in a)


def test_average_refuses_other_models_bad_weights_and_an_existing_output(
    full_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    train_run(other, "--num-iterations", "1", "--save-interval", "1", "--n-layer", "2")
    mine = str(ckpt.checkpoint_path(full_run, 5))
    out = tmp_path / "out.pt"
    code, _, err = _cli(capsys, "average", mine, str(other), "-o", str(out))
    assert code == 2 and "holds another model than" in err and "transformer.h.2.mlp.c_fc.weight: missing" in err
    assert not out.exists() and not list(tmp_path.glob(".out.pt*"))  # nothing half-written
    code, _, err = _cli(capsys, "average", mine, mine, "-o", str(out), "--weights", "1")
    assert code == 2 and "--weights has 1 value(s) for 2 checkpoint(s)" in err
    code, _, err = _cli(capsys, "average", mine, "-o", str(out), "--weights", "-1")
    assert code == 2 and "expected finite weights >= 0 with a positive sum" in err
    out.write_text("keep me")
    code, _, err = _cli(capsys, "average", mine, "-o", str(out))
    assert code == 2 and "exists; pass --force" in err and out.read_text() == "keep me"
    code, _, err = _cli(capsys, "average", str(tmp_path / "nothing"), "-o", str(tmp_path / "x.pt"))
    assert code == 2 and "does not exist" in err


def test_average_reads_sharded_checkpoints(full_run: Path, tmp_path: Path) -> None:
    """A sharded checkpoint of the same run averages to the same model as the full one."""
    from lrkit.train.checkpoint_command import average_checkpoints

    run_dir = tmp_path / "sharded"
    train_run(run_dir, *STEPS, *RUNS["tokens-groups-wd"], "--checkpoint-format", "sharded")
    sharded = average_checkpoints([ckpt.checkpoint_dir(run_dir, s) for s in (2, 4)], tmp_path / "s.pt")
    full = average_checkpoints([ckpt.checkpoint_path(full_run, s) for s in (2, 4)], tmp_path / "f.pt")
    assert sharded["tensors"] == full["tensors"]
    a, b = _model_of(tmp_path / "s.pt"), _model_of(tmp_path / "f.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "optimizer" not in ckpt.load_checkpoint(tmp_path / "s.pt")  # a sharded source's optimizer stays there
