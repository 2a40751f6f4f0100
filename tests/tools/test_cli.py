"""The shared schedule flags and the ``lrkit`` command line (preview, plot, lazily loaded subcommands)."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import lrkit
from lrkit import cli
from lrkit import schedules as S
from lrkit.tools.flags import ScheduleFlagError, add_schedule_arguments, spec_from_args

COSINE = ["--lr-scheduler", "cosine", "--lr", "3e-4", "--warmup-steps", "100", "--total-steps", "10000"]
COSINE += ["--min-lr", "3e-5"]
# A torch-class spec that is wrong: the cosine ends at step 900 and rises again before the run ends at 1000.
RISING = {
    "type": "SequentialLR",
    "milestones": [100],
    "schedulers": [
        {"type": "LinearLR", "start_factor": 0.01, "total_iters": 100},
        {"type": "CosineAnnealingLR", "T_max": 800, "eta_min": 1e-5},
    ],
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_schedule_arguments(parser)
    return parser.parse_args(argv)


def spec_of(argv: list[str]) -> dict:
    return spec_from_args(parse(argv))


# ----------------------------------------------------------------------------- flags -> specs

SHORT = {
    "constant": ["--warmup-steps", "5"],
    "step": ["--step-size", "7", "--gamma", "0.5", "--warmup-steps", "5"],
    "steplr": ["--step-size", "7", "--warmup-steps", "5", "--warmup-start-lr", "1e-5"],
    "multistep": ["--milestones", "20,35", "--warmup-steps", "5"],
    "linear": ["--warmup-steps", "5", "--total-steps", "40", "--min-lr", "1e-5"],
    "exponential": ["--gamma", "0.95"],
    "cosine": ["--warmup-steps", "5", "--total-steps", "40", "--min-lr", "1e-5"],
    "cosine-restarts": ["--cycle-steps", "10", "--cycle-mult", "2", "--warmup-steps", "5", "--total-steps", "35"],
    "polynomial": ["--warmup-steps", "5", "--total-steps", "40", "--power", "2"],
    "inverse-sqrt": ["--warmup-steps", "5"],
    "wsd": ["--warmup-steps", "5", "--total-steps", "40", "--decay-fraction", "0.25", "--decay-shape", "cosine"],
    "onecycle": ["--total-steps", "40", "--warmup-steps", "10"],
    "cyclic": ["--min-lr", "1e-4", "--step-size", "6"],
    "hf:cosine": ["--warmup-steps", "5", "--total-steps", "40"],
    "cosine_with_restarts": ["--warmup-steps", "5", "--total-steps", "40", "--num-cycles", "3"],
    "hf:polynomial": ["--warmup-steps", "5", "--total-steps", "40", "--min-lr", "1e-5", "--power", "2"],
    "constant_with_warmup": ["--warmup-steps", "5"],
    "inverse_sqrt": ["--warmup-steps", "5", "--timescale", "8"],
    "cosine_with_min_lr": ["--warmup-steps", "5", "--total-steps", "40", "--min-lr", "1e-5"],
    "cosine_warmup_with_min_lr": ["--warmup-steps", "5", "--total-steps", "40", "--min-lr", "1e-5"],
    "warmup_stable_decay": ["--warmup-steps", "5", "--total-steps", "40", "--decay-steps", "10"],
}


def trace(scheduler, optimizer, steps: int = 45) -> list[float]:
    out = [float(optimizer.param_groups[0]["lr"])]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        out.append(float(optimizer.param_groups[0]["lr"]))
    return out


def adamw(lr: float = 1e-3) -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)


@pytest.mark.parametrize("name", list(SHORT))
def test_every_short_name_gives_a_spec_both_backends_build_alike(name):
    spec = spec_of(["--lr-scheduler", name, "--lr", "1e-3", *SHORT[name]])
    json.dumps(spec)
    ours, theirs = adamw(), adamw()
    steps = 41 if name == "onecycle" else 45  # OneCycleLR raises past its total_steps (41 here)
    ours_lrs = trace(lrkit.build_scheduler(spec, ours), ours, steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own step-order warnings
        theirs_lrs = trace(lrkit.build_scheduler(spec, theirs, backend="torch"), theirs, steps)
    np.testing.assert_allclose(ours_lrs, theirs_lrs, rtol=1e-15, atol=0)
    assert max(ours_lrs) == pytest.approx(1e-3, rel=1e-12)
    if spec["type"] == "HFSchedule":  # both backends build from lrkit's math: transformers is the oracle
        transformers = pytest.importorskip("transformers")
        optimizer = adamw()
        oracle = transformers.get_scheduler(
            spec["name"],
            optimizer,
            num_warmup_steps=spec.get("num_warmup_steps"),
            num_training_steps=spec.get("num_training_steps"),
            scheduler_specific_kwargs=spec.get("scheduler_specific_kwargs"),
        )
        assert ours_lrs == trace(oracle, optimizer, steps)


def test_short_names_map_to_the_schedules_they_name():
    assert spec_of(["--lr-scheduler", "cosine", "--warmup-steps", "10", "--total-steps", "100"]) == {
        "type": "WarmupCosine",
        "warmup_steps": 10,
        "total_steps": 100,
        "min_lr": 0.0,
        "warmup_start_lr": 0.0,
    }
    assert spec_of(["--lr-scheduler", "steplr", "--step-size", "3"]) == spec_of(
        ["--lr-scheduler", "step", "--step-size", "3"]
    )
    step = spec_of(["--lr-scheduler", "step", "--step-size", "3", "--warmup-steps", "4"])
    assert step["type"] == "SequentialLR" and step["milestones"] == [4]
    assert [c["type"] for c in step["schedulers"]] == ["WarmupConstant", "StepLR"]
    multi = spec_of(["--lr-scheduler", "multistep", "--milestones", "30,60", "--warmup-steps", "10"])
    assert multi["schedulers"][1]["milestones"] == [20, 50]  # absolute milestones, counted after the warmup
    assert spec_of(["--lr-scheduler", "cosine", "--total-steps", "9"])["type"] == "WarmupCosine"
    assert spec_of(["--lr-scheduler", "hf:cosine", "--total-steps", "9"])["type"] == "HFSchedule"
    assert (
        spec_of(["--lr-scheduler", "cosine-restarts", "--cycle-steps", "10", "--total-steps", "30"])["num_cycles"] == 3
    )


def test_onecycle_peaks_at_w_and_floors_at_t_like_the_others():
    spec = spec_of(["--lr-scheduler", "onecycle", "--lr", "0.1", "--total-steps", "100", "--warmup-steps", "25"])
    optimizer = adamw(0.1)
    lrs = trace(lrkit.build_scheduler(spec, optimizer), optimizer, 100)
    assert int(np.argmax(lrs)) == 25 and lrs[25] == pytest.approx(0.1, rel=1e-12)
    assert lrs[100] == pytest.approx(min(lrs), rel=1e-12) and lrs[100] < lrs[99]


def test_json_spec_and_file_are_accepted(tmp_path):
    spec = {"type": "WSD", "warmup_steps": 3, "total_steps": 30, "decay_steps": 5}
    assert spec_of(["--lr-scheduler", json.dumps(spec)]) == spec
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    assert spec_of(["--lr-scheduler", f"@{path}", "--total-steps", "30"]) == spec


@pytest.mark.parametrize(
    "argv,match",
    [
        (
            ["--lr-scheduler", "cosine", "--total-steps", "9", "--gamma", "0.5"],
            "--gamma does not apply .* step, multistep",
        ),
        (["--lr-scheduler", "step", "--step-size", "3", "--min-lr", "0.1"], "--min-lr does not apply"),
        (["--lr-scheduler", "cosine"], "needs --total-steps"),
        (["--lr-scheduler", "step"], "needs --step-size"),
        (["--lr-scheduler", "wsd", "--total-steps", "9"], "needs --decay-steps or --decay-fraction"),
        (["--lr-scheduler", "wsd", "--total-steps", "9", "--decay-steps", "2", "--decay-fraction", "0.1"], "not both"),
        (["--lr-scheduler", "cosine", "--total-steps", "9", "--warmup-start-lr", "1e-5"], "needs --warmup-steps > 0"),
        (["--lr-scheduler", '{"type": "StepLR", "step_size": 2}', "--warmup-steps", "3"], "JSON spec"),
        (["--lr-scheduler", "cosine-restarts", "--cycle-steps", "10", "--total-steps", "25"], "does not end a cycle"),
        (["--lr-scheduler", "multistep", "--milestones", "5", "--warmup-steps", "5"], "must all be > --warmup-steps"),
        (
            [
                "--lr-scheduler",
                "warmup_stable_decay",
                "--total-steps",
                "9",
                "--decay-steps",
                "2",
                "--decay-shape",
                "exponential",
            ],
            "linear, cosine, 1-sqrt",
        ),
    ],
)
def test_flags_that_make_no_sense_together_are_errors(argv, match):
    with pytest.raises(ScheduleFlagError, match=match):
        spec_of(argv)


def test_an_unknown_name_is_an_argparse_error_listing_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(["--lr-scheduler", "cosine_anneal"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    for choice in ("constant", "steplr", "cosine-restarts", "wsd", "warmup_stable_decay", "hf:cosine", "@file.json"):
        assert choice in err


# ----------------------------------------------------------------------------- preview


def test_preview_of_a_good_schedule_prints_key_points_and_exits_0(capsys):
    assert cli.main(["preview", *COSINE]) == 0
    out = capsys.readouterr().out
    schedule = S.WarmupCosine(3e-4, 100, 10000, 3e-5)
    table = [re.match(r"^\s+(\d+)\s+(\d\.\d{6}e[+-]\d\d)\s+(.*)$", line) for line in out.splitlines()]
    rows = {int(m[1]): (float(m[2]), m[3]) for m in table if m}
    assert sorted(rows) == [0, 100, 10000, 10001]
    for step, (lr, _) in rows.items():
        assert lr == float(f"{schedule(step):.6e}")
    rows = {step: note for step, (_, note) in rows.items()}
    assert "warmup end" in rows[100] and "peak" in rows[100]
    assert "last step" in rows[10000] and "first step past the end" in rows[10001]
    assert "FAIL" not in out and out.count(" ok ") == 5
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█_.-~=*#@")


def test_preview_fails_when_the_final_lr_is_not_the_floor(capsys):
    code = cli.main(["preview", "--lr-scheduler", json.dumps(RISING), "--lr", "1e-3", "--total-steps", "1000"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  final LR at step 1000" in out and "rises above the floor" in out


def test_preview_fails_on_a_discontinuous_join(capsys):
    broken = {
        "type": "SequentialLR",
        "milestones": [50],
        "schedulers": [
            {"type": "LinearLR", "start_factor": 0.01, "total_iters": 100},
            {"type": "CosineAnnealingLR", "T_max": 950},
        ],
    }
    assert cli.main(["preview", "--lr-scheduler", json.dumps(broken), "--total-steps", "1000"]) == 1
    assert "discontinuous join at step 50" in capsys.readouterr().out


def test_preview_flags_transformers_rising_cosine(capsys):
    argv = ["preview", "--lr-scheduler", "hf:cosine", "--warmup-steps", "10", "--total-steps", "100"]
    assert cli.main(argv) == 1
    assert "rises above the floor after its end: step 101" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["step", "cosine-restarts", "wsd", "onecycle", "multistep", "cyclic"])
def test_preview_of_the_documented_configs_passes(name, capsys):
    argv = ["preview", "--lr-scheduler", name, *SHORT[name]]
    if "--total-steps" not in argv:
        argv += ["--total-steps", "60"]
    assert cli.main(argv) == 0, capsys.readouterr().out


def test_preview_usage_errors_exit_2(capsys):
    assert cli.main(["preview", "--lr-scheduler", "bogus"]) == 2
    assert "choose one of" in capsys.readouterr().err
    assert cli.main(["preview", "--lr-scheduler", "step", "--step-size", "3"]) == 2  # no end: needs --total-steps
    assert "pass --total-steps" in capsys.readouterr().err
    assert cli.main(["preview", "--lr-scheduler", "constant"]) == 2
    assert "pass --total-steps" in capsys.readouterr().err
    bad = {"type": "WarmupCosine", "warmup_steps": 10, "total_steps": 5}
    assert cli.main(["preview", "--lr-scheduler", json.dumps(bad)]) == 2
    assert "total_steps must be > warmup_steps" in capsys.readouterr().err


def test_csv_has_every_step(tmp_path):
    path = tmp_path / "lr.csv"
    assert cli.main(["preview", *COSINE, "--csv", str(path)]) == 0
    lines = path.read_text().splitlines()
    assert lines[0] == "step,lr" and len(lines) == 1 + 10002
    schedule = S.WarmupCosine(3e-4, 100, 10000, 3e-5)
    for line in lines[1::997]:
        step, lr = line.split(",")
        assert float(lr) == schedule(int(step))


# ----------------------------------------------------------------------------- plot


def test_plot_writes_a_png(tmp_path):
    import matplotlib.image

    path = tmp_path / "lr.png"
    assert cli.main(["plot", *COSINE, "-o", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(str(path))
    assert image.shape[0] >= 300 and image.shape[1] >= 600
    assert image[..., :3].std() > 0.01  # something was drawn


# ----------------------------------------------------------------------------- subcommands


def test_every_command_loads_its_module():
    for name, (load, _) in cli._COMMANDS.items():
        adder, runner = load()
        assert callable(runner), name
        assert adder is None or callable(adder), name


def test_subcommands_are_dispatched_lazily(monkeypatch):
    calls = []

    def load():
        return (lambda parser: parser.add_argument("--steps", type=int)), (lambda args: calls.append(args.steps) or 0)

    monkeypatch.setitem(cli._COMMANDS, "train", (load, "train"))
    assert cli.main(["train", "--steps", "7"]) == 0
    assert calls == [7]


def test_help_lists_every_command_without_importing_torch():
    code = (
        "import sys; from lrkit.cli import main; rc = main(['--help']); "
        "assert rc == 0 and 'torch' not in sys.modules, (rc, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for command in ("preview", "plot", "train", "demo", "align", "find-lr", "checkpoint"):
        assert command in result.stdout


def test_the_module_runs_as_a_script():
    result = subprocess.run(
        [sys.executable, "-m", "lrkit.cli", "preview", *COSINE], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "lrkit preview: WarmupCosine" in result.stdout


def test_a_reader_that_leaves_early_gets_no_traceback():
    """``lrkit preview | head -1``: a closed pipe ends the command quietly, with SIGPIPE's status (128 + 13)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        result = subprocess.run(
            [sys.executable, "-m", "lrkit.cli", "preview", *COSINE],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 128 + signal.SIGPIPE
