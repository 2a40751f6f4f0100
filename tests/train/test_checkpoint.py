"""Checkpoints: atomic save, pruning, weights_only loading, corruption handling, compatibility, RNG state."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lrkit.train.checkpoint import (
    CheckpointError,
    capture_rng_state,
    check_compatible,
    checkpoint_path,
    find_latest_valid,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from lrkit.train.data import TokenLoader
from lrkit.train.models import build_model


def _steps(run_dir: Path) -> list[int]:
    return [int(p.stem.split("_")[1]) for p in list_checkpoints(run_dir)]


def _training_payload(step: int = 3) -> dict[str, object]:
    """What the trainer saves: model, optimizer, scheduler, RNG, data position, config."""
    torch.manual_seed(0)
    model = build_model("gpt2", "tiny", n_layer=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    loader = TokenLoader(np.arange(10_000) % 256, batch_size=2, seq_len=16)
    for _ in range(step):
        x, y = loader.next_batch()
        _, loss = model(x, y)
        assert loss is not None
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": {"last_epoch": scheduler.last_epoch, "base_lrs": scheduler.base_lrs},
        "rng": capture_rng_state(),
        "data": loader.state_dict(),
        "step": step,
        "tokens": step * 32,
        "config": dataclasses.asdict(model.config),
    }


def test_save_writes_a_step_named_file_that_torch_loads_with_weights_only(tmp_path: Path) -> None:
    payload = _training_payload()
    path = save_checkpoint(tmp_path, 3, payload, keep_last=2)
    assert path == tmp_path / "checkpoints" / "step_00000003.pt" == checkpoint_path(tmp_path, 3)
    assert sorted(p.name for p in path.parent.iterdir()) == ["step_00000003.pt"]  # no temporary file left
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == 1 and raw["meta"]["step"] == 3
    loaded = load_checkpoint(path, required_keys=["model", "optimizer"])
    assert loaded.keys() == payload.keys()
    for key, tensor in payload["model"].items():  # type: ignore[attr-defined]
        torch.testing.assert_close(loaded["model"][key], tensor, rtol=0, atol=0)
    assert loaded["config"] == payload["config"] and loaded["data"] == payload["data"]
    # The optimizer state loads into a fresh optimizer and matches exactly.
    torch.manual_seed(0)
    model = build_model("gpt2", "tiny", n_layer=1)
    model.load_state_dict(loaded["model"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    optimizer.load_state_dict(loaded["optimizer"])
    restored = optimizer.state_dict()
    assert restored["param_groups"] == payload["optimizer"]["param_groups"]  # type: ignore[index]
    saved_state = payload["optimizer"]["state"]  # type: ignore[index]
    assert restored["state"].keys() == saved_state.keys()
    for key, state in saved_state.items():
        assert state.keys() == {"step", "exp_avg", "exp_avg_sq"}
        assert restored["state"][key].keys() == state.keys()
        for name, tensor in state.items():
            assert torch.equal(restored["state"][key][name], tensor), (key, name)


def test_keep_last_prunes_the_oldest_checkpoints(tmp_path: Path) -> None:
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, {"step": step}, keep_last=2)
    assert _steps(tmp_path) == [4, 5]
    save_checkpoint(tmp_path, 6, {"step": 6})  # keep_last=None keeps everything
    assert _steps(tmp_path) == [4, 5, 6]


class InjectedSaveFailure(Exception):
    """Raised by :class:`FailsToPickle` only, so that no other error can pass for it."""


class FailsToPickle:
    """A payload value whose pickling fails after torch.save has begun writing the file."""

    def __reduce__(self) -> Any:
        raise InjectedSaveFailure("injected: pickling failed mid-save")


def test_a_failed_save_leaves_the_previous_checkpoint_and_no_partial_file(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"step": 1}, keep_last=1)
    weights = torch.arange(1000.0)  # written before the failing value: a partial file exists when it fails
    with pytest.raises(InjectedSaveFailure, match="injected: pickling failed mid-save"):
        save_checkpoint(tmp_path, 2, {"step": 2, "weights": weights, "bad": FailsToPickle()}, keep_last=1)
    assert _steps(tmp_path) == [1]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000001.pt"]
    assert load_checkpoint(checkpoint_path(tmp_path, 1))["step"] == 1


def test_a_payload_that_weights_only_cannot_load_is_rejected_at_save_time(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, {"step": 1})
    config = build_model("gpt2", "tiny", n_layer=1).config  # a dataclass, not plain data: asdict() was forgotten
    with pytest.raises(CheckpointError, match=r"step_00000001\.pt must hold only tensors and plain Python data"):
        save_checkpoint(tmp_path, 1, {"step": 1, "config": config})
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000001.pt"]
    assert load_checkpoint(checkpoint_path(tmp_path, 1)) == {"step": 1}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte_in_tensor_data(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # the middle of the file is tensor data in these checkpoints
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte_in_tensor_data], ids=["truncated", "bit-flip"])
def test_a_damaged_checkpoint_raises_checkpoint_error_naming_the_path(tmp_path: Path, damage) -> None:  # type: ignore[no-untyped-def]
    path = save_checkpoint(tmp_path, 7, {"weights": torch.randn(256, 256)})
    # torch.load alone does not notice a flipped bit; load_checkpoint checks the archive's CRCs.
    damage(path)
    with pytest.raises(CheckpointError, match=r"step_00000007\.pt") as error:
        load_checkpoint(path)
    assert isinstance(error.value, ValueError)


def test_load_checkpoint_rejects_missing_files_foreign_files_and_missing_keys(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {}}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.pt is not an lrkit checkpoint"):
        load_checkpoint(foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match=r"garbage\.pt"):
        load_checkpoint(garbage)
    path = save_checkpoint(tmp_path, 1, {"model": {}})
    with pytest.raises(CheckpointError, match=r"missing key\(s\) \['optimizer'\]"):
        load_checkpoint(path, required_keys=["model", "optimizer"])


def test_find_latest_valid_skips_a_corrupted_newest_checkpoint(tmp_path: Path) -> None:
    assert find_latest_valid(tmp_path) is None
    for step in (10, 20):
        save_checkpoint(tmp_path, step, {"weights": torch.full((64, 64), float(step))})
    _truncate(checkpoint_path(tmp_path, 20))
    with pytest.warns(UserWarning, match=r"step_00000020\.pt"):
        latest = find_latest_valid(tmp_path)
    assert latest == checkpoint_path(tmp_path, 10)
    assert load_checkpoint(latest)["weights"][0, 0].item() == 10.0


def test_pruning_after_resuming_past_a_corrupted_checkpoint_keeps_the_valid_ones(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 100, {"step": 100}, keep_last=1)
    save_checkpoint(tmp_path, 300, {"step": 300}, keep_last=1)
    assert _steps(tmp_path) == [300]
    _truncate(checkpoint_path(tmp_path, 300))
    # A resumed run saves step 200: the corrupt 300 is the highest step, but 200 is the newest valid one.
    save_checkpoint(tmp_path, 200, {"step": 200}, keep_last=1)
    assert 200 in _steps(tmp_path)
    with pytest.warns(UserWarning, match="step_00000300"):
        assert find_latest_valid(tmp_path) == checkpoint_path(tmp_path, 200)


def test_save_checkpoint_validates_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_last must be >= 1 or None, got keep_last=0"):
        save_checkpoint(tmp_path, 1, {}, keep_last=0)
    with pytest.raises(ValueError, match="step must be an int >= 0, got step=-1"):
        save_checkpoint(tmp_path, -1, {})


def test_check_compatible_lists_every_differing_key_with_both_values() -> None:
    saved = {"model": "gpt2", "n_layer": 4, "shape": (2, 3), "seed": 1}
    check_compatible(saved, {"model": "gpt2", "n_layer": 4, "shape": [2, 3], "seed": 2}, ["model", "n_layer", "shape"])
    with pytest.raises(CheckpointError) as error:
        check_compatible(saved, {"model": "llama3", "n_layer": 4}, ["model", "n_layer", "shape"], source="run/ckpt.pt")
    message = str(error.value)
    assert "run/ckpt.pt" in message
    assert "model: checkpoint='gpt2', run='llama3'" in message
    assert "shape: checkpoint=(2, 3), run='<missing>'" in message
    assert "n_layer" not in message


def _draw() -> tuple[torch.Tensor, np.ndarray, list[float]]:
    return (
        torch.rand(5),
        np.concatenate([np.random.rand(3), np.random.standard_normal(3)]),
        [random.random(), random.gauss(0, 1), random.gauss(0, 1), random.randint(0, 10**9)],
    )


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    random.gauss(0, 1)  # leave a cached gaussian in python's and numpy's generators
    np.random.standard_normal(1)
    path = save_checkpoint(tmp_path, 1, {"rng": capture_rng_state()})
    expected = _draw()
    _draw()  # move every generator on
    restore_rng_state(load_checkpoint(path)["rng"])
    got = _draw()
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]
