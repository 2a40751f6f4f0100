"""Reliability of ``lrkit preview``/``plot`` and of spec input (issue 18, items 3 and 5): bounded tools.

Every hostile input gets an error naming it, what it is and the limit, and never a hang, a
traceback or unbounded memory: ``@file`` reads only regular files up to a cap, JSON specs nest at most
64 levels, preview/plot evaluate a bounded grid plus the exact key points at any length, ``--csv``
streams, and output paths are checked before anything is evaluated.

Inputs that would hang or exhaust memory without the bounds run in a subprocess under an address-space
limit and a timeout, so a regression fails the test instead of the machine. Time and memory are
measured in ``benchmarks/bounded_tools.py``, not asserted here.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrkit import cli
from lrkit import schedules as S
from lrkit.schedulers.hparams import schedule_from_text
from lrkit.schedules.source import MAX_JSON_DEPTH, MAX_SOURCE_BYTES, json_depth, loads_json
from lrkit.tools.preview import GRID_POINTS

ROOT = Path(__file__).resolve().parents[2]
#: The issue's schedule: cosine, peak 3e-3 after 5 warmup steps, floor 3e-4.
COSINE = ["--lr", "3e-3", "--lr-scheduler", "cosine", "--warmup-steps", "5", "--min-lr", "3e-4"]
#: Address space for a subprocess: torch and matplotlib fit; an array of every one of 10^9 steps does not.
LIMIT_BYTES = 3 << 30


def cosine(total: int) -> S.Schedule:
    """The oracle of :data:`COSINE` over ``total`` steps."""
    return S.WarmupCosine(3e-3, 5, total, 3e-4)


def run_bounded(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``lrkit argv`` in a subprocess limited to :data:`LIMIT_BYTES` of address space and ``timeout`` seconds.

    A hang or an unbounded allocation fails the caller's assertions (non-zero exit, or the timeout as
    exit code -9) instead of stalling the suite.
    """
    code = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({LIMIT_BYTES}, {LIMIT_BYTES}))
        from lrkit.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
        )
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        return subprocess.CompletedProcess(err.cmd, -9, out, f"timed out after {timeout} s")


def table(out: str) -> dict[int, tuple[float, str]]:
    """The rows of preview's key-point table: step -> (LR as printed, notes)."""
    rows = [re.match(r"^\s+(\d+)\s+(\d\.\d{6}e[+-]\d\d)\s+(.*)$", line) for line in out.splitlines()]
    return {int(m[1]): (float(m[2]), m[3]) for m in rows if m}


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "Error:" not in text.replace("error:", ""), text[-2000:]


# ----------------------------------------------------------------------------- @file: regular files under a cap


def _dev_zero(tmp: Path) -> tuple[str, str]:
    return "/dev/zero", "is a character device"


def _fifo(tmp: Path) -> tuple[str, str]:
    path = tmp / "spec.fifo"
    os.mkfifo(path)
    return str(path), "is a FIFO"


def _directory(tmp: Path) -> tuple[str, str]:
    return str(tmp), "is a directory"


def _too_big(tmp: Path) -> tuple[str, str]:
    path = tmp / "big.json"
    spec = json.dumps({"type": "WarmupCosine", "warmup_steps": 5, "total_steps": 100})
    path.write_text(spec + " " * MAX_SOURCE_BYTES)  # valid JSON, one MiB of padding too long
    return str(path), f"is {MAX_SOURCE_BYTES + len(spec)} bytes; at most {MAX_SOURCE_BYTES} bytes"


def _not_utf8(tmp: Path) -> tuple[str, str]:
    path = tmp / "latin1.json"
    path.write_bytes(b'{"type": "WarmupCosine", "name": "caf\xe9"}')
    return str(path), "is not UTF-8 text"


def _missing(tmp: Path) -> tuple[str, str]:
    return str(tmp / "nope.json"), "cannot read spec file"


SPEC_FILES = {
    "dev-zero": _dev_zero,
    "fifo": _fifo,
    "directory": _directory,
    "too-big": _too_big,
    "not-utf8": _not_utf8,
    "missing": _missing,
}


#: The files that hang (a FIFO) or fill memory (/dev/zero) when read without bounds: read in a subprocess.
HANGS = ("dev-zero", "fifo")


@pytest.mark.slow
@pytest.mark.parametrize("case", HANGS)
def test_a_spec_file_that_never_ends_is_refused_without_reading_it(tmp_path, case):
    path, expected = SPEC_FILES[case](tmp_path)
    proc = run_bounded("preview", "--lr-scheduler", f"@{path}", "--total-steps", "100", timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    no_traceback(proc.stderr)
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("lrkit preview: error: argument --lr-scheduler:"), error
    assert f"spec file {path!r} {expected}" in error and "only a regular file is read" in error, error


@pytest.mark.parametrize("case", [case for case in SPEC_FILES if case not in HANGS])
def test_a_spec_file_is_read_only_if_it_is_a_regular_file_under_the_cap(tmp_path, capsys, case):
    path, expected = SPEC_FILES[case](tmp_path)
    assert cli.main(["preview", "--lr-scheduler", f"@{path}", "--total-steps", "100"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("lrkit preview: error: argument --lr-scheduler:"), error
    assert repr(path) in error and expected in error, error


@pytest.mark.slow
def test_a_hyperparameter_schedule_file_is_bounded_too(tmp_path):
    """``--wd-schedule @FIFO`` (read by :func:`schedule_from_text`, a lower layer) never blocks."""
    fifo = tmp_path / "wd.fifo"
    os.mkfifo(fifo)
    code = (
        "import sys; from lrkit.schedulers.hparams import schedule_from_text\n"
        "try:\n    schedule_from_text(sys.argv[1], 100, name='--wd-schedule')\n"
        "except ValueError as err:\n    print(err)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, f"@{fifo}"], capture_output=True, text=True, timeout=60, env=env
        )
    except subprocess.TimeoutExpired:
        pytest.fail("reading a FIFO as a schedule file blocked")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"--wd-schedule: schedule file {str(fifo)!r} is a FIFO" in proc.stdout


def test_a_schedule_file_in_the_cap_still_reads(tmp_path):
    path = tmp_path / "wd.json"
    path.write_text(json.dumps({"type": "Decay", "start_lr": 0.1, "decay_steps": 10, "min_lr": 0.0}))
    schedule = schedule_from_text(f"@{path}", 10, name="--wd-schedule")
    assert schedule(0) == 0.1 and schedule(10) == 0.0


# ----------------------------------------------------------------------------- JSON specs: a depth limit


def deep_spec(depth: int) -> str:
    """A spec whose one extra argument nests ``depth`` arrays (the spec object is one more level).

    Written as text: :func:`json.dumps` itself recurses too deep for the issue's 1000 levels.
    """
    return (
        '{"type": "WarmupCosine", "warmup_steps": 5, "total_steps": 100, "x": ' + "[" * depth + "0" + "]" * depth + "}"
    )


@pytest.mark.parametrize("how", ["inline", "@file"])
@pytest.mark.parametrize("depth", [1000, MAX_JSON_DEPTH])  # the spec, and one level past the cap
def test_a_deep_json_spec_is_an_error_not_a_recursion_error(tmp_path, capsys, how, depth):
    text = deep_spec(depth)
    source = text
    if how == "@file":
        (tmp_path / "deep.json").write_text(text)
        source = f"@{tmp_path / 'deep.json'}"
    assert cli.main(["preview", "--lr-scheduler", source, "--total-steps", "100"]) == 2
    err = capsys.readouterr().err
    assert f"the JSON spec nests {depth + 1} levels deep; at most {MAX_JSON_DEPTH} levels" in err


def test_a_spec_at_the_depth_limit_parses(capsys):
    """At the cap the spec is parsed (and then refused for its unknown key, by the builder, not the parser)."""
    assert cli.main(["preview", "--lr-scheduler", deep_spec(MAX_JSON_DEPTH - 1), "--total-steps", "100"]) == 2
    err = capsys.readouterr().err
    assert "levels deep" not in err and "unknown keys ['x']" in err


def _depth_of(value: Any) -> int:
    """The oracle: nesting depth by recursion over the parsed value."""
    if isinstance(value, dict):
        return 1 + max(map(_depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth_of, value), default=0)
    return 0


def _random_json(rng: random.Random, depth: int) -> Any:
    tricky = ['"[{', '\\"]}', "{[", "]]]", 'a"b', "\\", ""]
    if depth == 0 or rng.random() < 0.2:
        return rng.choice([1, 2.5, None, True, rng.choice(tricky)])
    if rng.random() < 0.5:
        return [_random_json(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(tricky) + str(i): _random_json(rng, depth - 1) for i in range(rng.randint(0, 3))}


def test_json_depth_counts_brackets_outside_strings_like_a_recursive_walk():
    rng = random.Random(18)
    for _ in range(300):
        value = _random_json(rng, rng.randint(0, 12))
        text = json.dumps(value, indent=rng.choice([None, 1]))
        assert json_depth(text) == _depth_of(value), text
        assert loads_json(text) == value


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ('{"type": "WarmupCosine", "warmup_steps": 5, "total_steps": 100, "min_lr": NaN}', "NaN is not a JSON number"),
        (
            '{"type": "WarmupCosine", "warmup_steps": 5, "total_steps": 100, "min_lr": -Infinity}',
            "-Infinity is not a JSON number",
        ),
        ('{"type": "WarmupCosine", "total_steps": ' + "9" * 5000 + "}", "Exceeds the limit (4300 digits)"),
    ],
    ids=["nan", "infinity", "5000-digit-int"],
)
def test_a_json_spec_with_a_value_json_does_not_have_names_the_spec(capsys, spec, expected):
    assert cli.main(["preview", "--lr-scheduler", spec, "--total-steps", "100"]) == 2
    err = capsys.readouterr().err
    assert "argument --lr-scheduler: invalid JSON spec" in err and expected in err
    assert len(err) < 3000  # the spec is quoted cut, not 5000 digits long


# ----------------------------------------------------------------------------- preview/plot of very long runs


@pytest.mark.slow
@pytest.mark.parametrize("total", [10**9, 10**15])
def test_preview_of_a_very_long_run_is_bounded_and_exact_at_the_key_points(tmp_path, total):
    """The issue's 10^9 and 10^15 steps: a sampled grid, the key points exact, a streamed CSV of the grid."""
    path = tmp_path / "lr.csv"
    proc = run_bounded("preview", *COSINE, "--total-steps", str(total), "--csv", str(path))
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    no_traceback(proc.stderr)
    oracle = cosine(total)
    rows = table(proc.stdout)
    assert sorted(rows) == [0, 5, total, total + 1]
    for step, (lr, _) in rows.items():
        assert lr == float(f"{oracle(step):.6e}")
    assert "peak" in rows[5][1] and "last step" in rows[total][1]
    assert "FAIL" not in proc.stdout and "key points exact" in proc.stdout
    lines = path.read_text().splitlines()
    assert lines[0] == "step,lr" and 100_000 < len(lines) < 100_100  # the grid, not 10^9 lines
    steps = np.array([int(line.split(",")[0]) for line in lines[1:]])
    lrs = np.array([float(line.split(",")[1]) for line in lines[1:]])
    assert steps[0] == 0 and steps[-1] == total + 1 and np.all(np.diff(steps) > 0)
    assert {5, 4, 6, total, total + 1} <= set(steps.tolist())
    np.testing.assert_array_equal(lrs, oracle(steps))  # bit for bit: repr round-trips


@pytest.mark.slow
def test_plot_of_a_billion_steps_draws_a_png(tmp_path):
    path = tmp_path / "lr.png"
    proc = run_bounded("plot", *COSINE, "--total-steps", str(10**9), "-o", str(path))
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_sampled_preview_still_fails_a_schedule_that_rises_after_its_end(capsys):
    """transformers' cosine rises after its end: the first step past the end is a key point on a sampled grid."""
    total = 200_000  # past GRID_POINTS: sampled; short enough that the rise (~6e-11 relative) is over the tolerance
    argv = ["preview", "--lr-scheduler", "hf:cosine", "--warmup-steps", "10", "--total-steps", str(total)]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "sampled steps" in out and f"rises above the floor after its end: step {total + 1}" in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--total-steps", str(2**53 + 10)], f"--total-steps {2**53 + 10} is too long to preview"),
        (["--total-steps", str(10**30)], "exact only up to 2**53 = 9007199254740992"),
        (["--total", "100000000Ttok", "--tokens-per-step", "1"], f"--total {10**20} is too long to preview"),
    ],
    ids=["2**53+10", "10**30", "tokens"],
)
def test_a_run_past_float64_steps_is_a_clear_error(capsys, argv, expected):
    assert cli.main(["preview", *COSINE[:4], "--min-lr", "3e-4", *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err, err


@pytest.mark.slow
def test_a_stepped_scheduler_past_its_cap_is_a_clear_error_not_minutes_of_stepping():
    proc = run_bounded("preview", "--lr-scheduler", "step", "--step-size", "1000", "--total-steps", "100000000")
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "--total-steps 100000000 is too long to preview StepLR" in proc.stderr
    assert "at most 1000000 steps" in proc.stderr


def test_a_stepped_scheduler_past_the_grid_is_sampled_exactly(capsys):
    """MultiStepLR past the grid: stepped in full, shown on the grid; each key point is the exact LR.

    With ``gamma = 0.5`` torch's recursive product is exact, so ``1e-3 * 0.5 ** milestones passed`` is the oracle.
    """
    total = GRID_POINTS + 500
    argv = ["preview", "--lr-scheduler", "multistep", "--milestones", "50000,90000", "--gamma", "0.5"]
    assert cli.main([*argv, "--lr", "1e-3", "--total-steps", str(total)]) == 0
    out = capsys.readouterr().out
    assert "sampled steps" in out
    rows = table(out)
    assert sorted(rows) == [0, total, total + 1]  # MultiStepLR declares no phases
    for step, (lr, _) in rows.items():
        assert lr == float(f"{1e-3 * 0.5 ** ((step >= 50000) + (step >= 90000)):.6e}"), step


# ----------------------------------------------------------------------------- --csv streams


def test_csv_every_n_writes_every_nth_step_exactly(tmp_path, capsys):
    path = tmp_path / "lr.csv"
    assert cli.main(["preview", *COSINE, "--total-steps", "10000", "--csv", str(path), "--every", "7"]) == 0
    assert f"{len(range(0, 10002, 7))} rows, every 7 steps" in capsys.readouterr().out
    lines = path.read_text().splitlines()
    steps = [int(line.split(",")[0]) for line in lines[1:]]
    assert steps == list(range(0, 10002, 7))
    assert [float(line.split(",")[1]) for line in lines[1:]] == [cosine(10000)(s) for s in steps]


def test_csv_every_n_streams_a_billion_step_run(tmp_path):
    path = tmp_path / "lr.csv"
    assert cli.main(["preview", *COSINE, "--total-steps", str(10**9), "--csv", str(path), "--every", "10000000"]) == 0
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 101 and lines[-1] == f"{10**9},{cosine(10**9)(10**9)!r}"


def test_csv_every_n_of_a_stepped_scheduler(tmp_path):
    path = tmp_path / "lr.csv"
    argv = ["--lr-scheduler", "exponential", "--gamma", "0.99", "--lr", "1e-3", "--total-steps", "100"]
    assert cli.main(["preview", *argv, "--csv", str(path), "--every", "25"]) == 0
    every = tmp_path / "all.csv"
    assert cli.main(["preview", *argv, "--csv", str(every)]) == 0
    assert path.read_text().splitlines()[1:] == every.read_text().splitlines()[1::25]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--every", "5"], "--every 5 applies to --csv; add --csv FILE"),
        (["--every", "0", "--csv", "{tmp}/lr.csv"], "--every must be >= 1, got 0"),
    ],
    ids=["without-csv", "zero"],
)
def test_every_misuse_names_the_flag(tmp_path, capsys, argv, expected):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(["preview", *COSINE, "--total-steps", "100", *argv]) == 2
    assert expected in capsys.readouterr().err


# ----------------------------------------------------------------------------- bad output paths (item 5)


def _missing_dir(tmp: Path) -> tuple[str, str]:
    return str(tmp / "nope" / "out"), f"the directory {str(tmp / 'nope')!r} does not exist"


def _is_dir(tmp: Path) -> tuple[str, str]:
    return str(tmp), "is a directory; expected a file name"


def _parent_is_file(tmp: Path) -> tuple[str, str]:
    (tmp / "file").write_text("")
    return str(tmp / "file" / "out"), f"{str(tmp / 'file')!r} is not a directory"


BAD_OUTPUTS = {"missing-dir": _missing_dir, "is-dir": _is_dir, "parent-is-file": _parent_is_file}


@pytest.mark.parametrize("where", list(BAD_OUTPUTS))
@pytest.mark.parametrize("flag", ["plot -o", "plot --csv", "preview --csv"])
def test_a_bad_output_path_is_an_error_naming_it_before_anything_is_written(tmp_path, capsys, where, flag):
    command, option = flag.split()
    path, expected = BAD_OUTPUTS[where](tmp_path)
    suffix = ".png" if option == "-o" else ".csv"
    if where != "is-dir":
        path += suffix
    argv = [command, *COSINE, "--total-steps", "100", option, path]
    if command == "plot" and option == "--csv":
        argv += ["-o", str(tmp_path / "lr.png")]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    shown = "-o/--output" if option == "-o" else "--csv"
    assert f"lrkit {command}: error: {shown} {path!r}" in err and expected in err, err
    assert out == ""  # nothing evaluated, nothing printed
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written (not even the png)


def test_plot_to_an_unknown_image_format_names_the_formats(tmp_path, capsys):
    path = tmp_path / "lr.xyz"
    assert cli.main(["plot", *COSINE, "--total-steps", "100", "-o", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"-o/--output {str(path)!r}: matplotlib cannot write 'xyz' images" in err and "png" in err


def test_plot_without_a_suffix_writes_the_path_it_names(tmp_path, capsys):
    path = tmp_path / "lr"
    assert cli.main(["plot", *COSINE, "--total-steps", "100", "-o", str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "lr.png").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_output_directory_is_named(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    path = locked / "lr.png"
    assert cli.main(["plot", *COSINE, "--total-steps", "100", "-o", str(path)]) == 2
    assert f"the directory {str(locked)!r} is not writable" in capsys.readouterr().err
