"""The trainer's config is data: built once from the flags or a TOML file, printed, stored, never mutated."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
from pathlib import Path

import pytest

from lrkit import cli
from lrkit.tools.flags import add_schedule_arguments
from lrkit.train import checkpoint as ckpt
from lrkit.train.arguments import config_from_args
from lrkit.train.command import run_train
from lrkit.train.config import SECTIONS, ScheduleConfig, TrainConfig, flag_of, schedule_flag_names
from lrkit.train.errors import ConfigError
from lrkit.train.find_lr import add_find_lr_arguments, configs_from_args
from lrkit.train.metrics import read_metrics
from tests.conftest import TINY, parse, trace


def lrkit_train(*argv: str) -> tuple[int, str, str]:
    """``lrkit train ARGV``: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["train", *argv])
    return code, out.getvalue(), err.getvalue()


def test_the_flags_defaults_are_the_configs() -> None:
    assert TrainConfig.from_args(parse()) == TrainConfig()


def test_every_flag_is_one_config_field() -> None:
    """The flags and the fields agree both ways (a new flag without a field, or the reverse, fails here)."""
    flags = set(vars(parse())) - {"config", "print_config", "typed_flags"}
    fields = [(cls, f) for cls in SECTIONS.values() for f in dataclasses.fields(cls) if not f.metadata.get("derived")]
    dests = [flag_of(cls, f.name)[2:].replace("-", "_") for cls, f in fields]
    assert sorted(dests) == sorted(flags)


def test_the_schedule_section_holds_every_schedule_flag() -> None:
    class Names:
        def __init__(self) -> None:
            self.dests: list[str] = []

        def add_argument(self, *names: str, **kwargs: object) -> None:
            self.dests.append(names[0][2:].replace("-", "_"))

    names = Names()
    add_schedule_arguments(names)
    fields = {f.name for f in dataclasses.fields(ScheduleConfig)}
    assert set(names.dests) == schedule_flag_names() and schedule_flag_names() <= fields


def test_the_config_is_frozen_and_resolve_returns_a_new_one() -> None:
    config = TrainConfig.from_args(parse("--num-iterations", "7"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch.num_iterations = 3  # type: ignore[misc]
    resolved = config.resolve()
    assert config.schedule.total_steps is None and config.schedule.spec is None  # unchanged
    assert resolved.batch.num_iterations == 7 and resolved.schedule.total_steps == 7
    assert resolved.schedule.spec is not None and resolved.schedule.spec["type"] == "WarmupConstant"
    assert resolved.resolve() == resolved


def test_resolve_derives_the_run_length() -> None:
    assert TrainConfig().resolve().batch.num_iterations == 100
    assert TrainConfig().resolve().schedule.total_steps == 100
    tokens = TrainConfig.from_args(parse("--lr-scheduler", "cosine", "--total", "1000tok", "--batch-size", "2",
                                         "--sequence-length", "32"))  # fmt: skip
    resolved = tokens.resolve()
    assert resolved.batch.num_iterations == 16  # ceil(1000 / 64)
    assert resolved.schedule.total_steps is None  # the schedule's length is --total, on the token clock
    assert resolved.schedule.spec is not None and resolved.schedule.spec["type"] == "Clocked"
    assert tokens.resolve(start_step=10, start_clock={"tokens": 640, "samples": 20}).batch.num_iterations == 16


def test_print_config_then_config_gives_the_same_config(tmp_path: Path) -> None:
    argv = ["--lr-scheduler", "wsd", "--warmup-steps", "3", "--decay-fraction", "0.2", "--min-lr", "1e-5",
            "--param-groups", "parts", "--group-lr", "embed=0.5", "--group-schedule",
            'head={"type": "WarmupCosine", "warmup_steps": 1, "total_steps": 9, "min_lr": 0.0}',
            "--wd-schedule", "cosine:0.1:0.01", "--lr-resume-policy", "cooldown:4:cosine", "--no-plot"]  # fmt: skip
    code, printed, _ = lrkit_train(*argv, "--print-config")
    assert code == 0
    path = tmp_path / "run.toml"
    path.write_text(printed)
    assert TrainConfig.from_toml(printed) == config_from_args(parse(*argv)).resolve()
    code, again, _ = lrkit_train("--config", str(path), "--print-config")
    assert code == 0 and again == printed


def test_typed_flags_override_the_file_and_only_those(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("[schedule]\nlr = 0.01\n\n[batch]\nbatch_size = 4\n\n[logging]\nplot = false\n")
    config = config_from_args(parse("--config", str(path), "--lr", "0.001"))  # 0.001 is also the default
    assert config.schedule.lr == 0.001  # typed: it wins, even at the default value
    assert config.batch.batch_size == 4 and config.logging.plot is False  # not typed: the file's
    assert config_from_args(parse("--config", str(path))).schedule.lr == 0.01


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[optimiser]\nname = 'sgd'\n", "unknown section [optimiser]; the sections are: [model], [data]"),
        ("[optimizer]\nlr = 0.1\n", "unknown key 'lr' in [optimizer]; the keys of [optimizer] are: name, weight_decay"),
        ("[batch]\nbatch_size = '8'\n", "[batch] batch_size = '8' must be an integer"),
        ("[schedule]\nlr = true\n", "[schedule] lr = True must be a number"),
        ("[schedule]\nmilestones = [1, 'x']\n", "milestones = [1, 'x'] must be an array of an integer"),
        ("[optimizer]\nname = 'lion'\n", "[optimizer] name = 'lion' must be one of: adamw, adam, sgd"),
        ("[schedule]\nlr_scheduler = 'cosin'\n", "unknown scheduler 'cosin'"),
        ("[schedule]\nresume_policy = 'sometimes'\n", "--lr-resume-policy must be one of"),
        ("model = 3\n", "[model] must be a table"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_a_bad_config_file_is_an_error_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_file(str(path))
    assert message in str(err.value) and str(path) in str(err.value)
    code, _, stderr = lrkit_train("--config", str(path), "--print-config")
    assert code == 2 and stderr.startswith("lrkit train: error: ") and message in stderr


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    code, _, stderr = lrkit_train("--config", str(tmp_path / "nope.toml"))
    assert code == 2 and "--config" in stderr and "nope.toml" in stderr


def test_a_run_from_its_printed_config_trains_the_same(tmp_path: Path) -> None:
    argv = [*TINY, "--num-iterations", "3", "--lr-scheduler", "cosine", "--warmup-steps", "1", "--lr", "0.01"]
    assert lrkit_train(*argv, "--run-dir", str(tmp_path / "flags"))[0] == 0
    code, printed, _ = lrkit_train(*argv, "--run-dir", str(tmp_path / "file"), "--print-config")
    assert code == 0
    (tmp_path / "run.toml").write_text(printed)
    assert lrkit_train("--config", str(tmp_path / "run.toml"))[0] == 0
    flags, file = (read_metrics(tmp_path / d / "metrics.jsonl") for d in ("flags", "file"))
    assert len(flags) == 3 and trace(file) == trace(flags)


def test_a_checkpoint_stores_the_resolved_config(tmp_path: Path) -> None:
    args = parse(*TINY, "--run-dir", str(tmp_path), "--num-iterations", "2", "--save-interval", "2",
                 "--lr-scheduler", "linear")  # fmt: skip
    assert run_train(args) == 0
    payload = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path, 2))
    resolved = config_from_args(args).resolve()
    assert payload["train_config"] == resolved.to_dict()
    assert TrainConfig.from_dict(payload["train_config"]) == resolved
    assert payload["config"]["num_iterations"] == 2 and payload["config"]["n_layer"] is None  # the flat form, as before


def test_find_lr_builds_a_real_config() -> None:
    parser = argparse.ArgumentParser()
    add_find_lr_arguments(parser)
    config, test = configs_from_args(parser.parse_args(["--batch-size", "3", "--optimizer", "sgd", "--num-steps", "9"]))
    assert isinstance(config, TrainConfig)
    assert config.batch.batch_size == 3 and config.optimizer.name == "sgd" and test.num_steps == 9
    assert config.model == TrainConfig().model
