"""Issue 18, item 5: every trainer and ``lrkit align`` input that was taken silently or failed with a raw
traceback is refused with an error naming the argument, the value and what was expected, before any work;
and a resume compares the resolved model config, not the raw flags.

Each case was measured on main before the fix (the table in the issue's note); each test fails there.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lrkit.align.command import main as align_main
from lrkit.train import parallel
from lrkit.train.config import SECTIONS, TrainConfig
from lrkit.train.data import DataError, load_corpus, write_llmc_shard
from lrkit.train.errors import ConfigError, TrainError
from tests.conftest import trace, train_error_of, train_run

# ----------------------------------------------------------------------------- out-of-range flags

#: (flags, the value as the message shows it, what the message says is expected). On main each of these ran
#: silently as something else (``--grad-clip -1`` as no clipping, ``--threads 0`` as torch's default,
#: ``--eval-interval -1`` as every step, ``--device bogus`` as the CPU, ...) or failed with a traceback
#: (``--eval-iters 0``: ZeroDivisionError, ``--total-batch-size 0``, ``--beta1 1.5`` and ``--seed -1``: a
#: ValueError, ``--threads -2``: a RuntimeError).
OUT_OF_RANGE = [
    (["--grad-clip", "-1"], "-1.0", "a finite number >= 0 (0 disables clipping)"),
    (["--grad-clip", "nan"], "nan", "a finite number >= 0"),
    (["--threads", "0"], "0", "an integer >= 1"),
    (["--threads", "-2"], "-2", "an integer >= 1"),
    (["--eval-iters", "0", "--eval-interval", "1"], "0", "an integer >= 1"),
    (["--eval-iters", "-1", "--eval-interval", "1"], "-1", "an integer >= 1"),
    (["--eval-interval", "-1"], "-1", "an integer >= 0 (0: never)"),
    (["--save-interval", "-1"], "-1", "an integer >= 0 (0: never)"),
    (["--keep-last", "0", "--save-interval", "1"], "0", "an integer >= 1"),
    (["--total-batch-size", "0"], "0", "an integer >= 1"),
    (["--total-batch-size", "-64"], "-64", "an integer >= 1"),
    (["--weight-decay", "-1"], "-1.0", "a finite number >= 0"),
    (["--weight-decay", "nan"], "nan", "a finite number >= 0"),
    (["--beta1", "1.5"], "1.5", "a number in [0, 1)"),
    (["--beta2", "1.0"], "1.0", "a number in [0, 1)"),
    (["--momentum", "-1", "--optimizer", "sgd"], "-1.0", "a number in [0, 1)"),
    (["--momentum", "1.5", "--optimizer", "sgd"], "1.5", "a number in [0, 1)"),
    (["--seed", "-1"], "-1", "an integer in [0, 2**32 - 1]"),
    (["--seed", str(2**33)], str(2**33), "an integer in [0, 2**32 - 1]"),
    (["--lr", "-1"], "-1.0", "a finite number >= 0"),
    (["--lr", "nan"], "nan", "a finite number >= 0"),
    (["--device", "bogus"], "'bogus'", "auto, cpu, cuda or cuda:N"),
    (["--device", "gpu"], "'gpu'", "auto, cpu, cuda or cuda:N"),
    (["--virtual-pipeline-parallel", "0"], "0", "an integer >= 1"),
    (["--val-fraction", "1.5"], "1.5", "a number in [0, 1)"),
]


def _ids(value: Any) -> str:
    return " ".join(value) if isinstance(value, list) else ""


@pytest.mark.parametrize(("argv", "shown", "expected"), OUT_OF_RANGE, ids=_ids)
def test_an_out_of_range_flag_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], shown: str, expected: str
) -> None:
    """Exit 2 before any step, with ``--flag = value must be <expected>``."""
    err = train_error_of(tmp_path, *argv, capsys=capsys)
    assert err.startswith("lrkit train: error: ")
    assert f"{argv[0]} = {shown} must be {expected}" in err, err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[optimizer]\ngrad_clip = -1.0\n", "[optimizer] grad_clip = -1.0 must be a finite number >= 0"),
        ("[parallel]\nthreads = 0\n", "[parallel] threads = 0 must be an integer >= 1"),
        ("[logging]\neval_iters = 0\n", "[logging] eval_iters = 0 must be an integer >= 1"),
        ("[batch]\ntotal_batch_size = 0\n", "[batch] total_batch_size = 0 must be an integer >= 1"),
        ("[parallel]\ndevice = 'gpu'\n", "[parallel] device = 'gpu' must be auto, cpu, cuda or cuda:N"),
        ("[data]\nval_fraction = 1.0\n", "[data] val_fraction = 1.0 must be a number in [0, 1)"),
    ],
)
def test_an_out_of_range_config_file_value_is_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    """A ``--config`` file goes through the same checks as the flags: the error names the file and the key."""
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_file(str(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_every_range_names_a_field_and_every_default_is_within_its_range() -> None:
    """The range table cannot drift from the sections: a renamed field, or a default it would refuse, fails."""
    from lrkit.train.config import _RANGES as RANGES

    defaults = TrainConfig()
    by_class = {cls: name for name, cls in SECTIONS.items()}
    for (cls, key), check in RANGES.items():
        section = getattr(defaults, by_class[cls])
        assert hasattr(section, key), (cls.__name__, key)
        value = getattr(section, key)
        assert value is None or check.holds(value), (cls.__name__, key, value)


def test_values_at_the_edge_of_their_range_are_accepted(tmp_path: Path) -> None:
    """The checks refuse only what cannot be meant: 0 disables clipping, evaluation and saving, as documented."""
    records = train_run(
        tmp_path,
        "--num-iterations", "2", "--grad-clip", "0", "--eval-interval", "0", "--save-interval", "0",
        "--weight-decay", "0", "--beta1", "0", "--seed", str(2**32 - 1), "--device", "cpu", "--lr", "0",
    )  # fmt: skip
    assert [r["step"] for r in records] == [1, 2]


# ----------------------------------------------------------------------------- --device


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_on_a_machine_without_it_is_refused_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str
) -> None:
    """Was torch's ``AssertionError: Torch not compiled with CUDA enabled`` with a traceback."""
    err = train_error_of(tmp_path, "--device", device, capsys=capsys)
    assert f"--device {device}: " in err and "expected cpu or auto on this machine" in err, err


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this machine has one CUDA device (setup_distributed then only builds ``torch.device`` objects)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


@pytest.mark.usefixtures("one_gpu")
def test_a_cuda_index_past_the_visible_devices_is_refused() -> None:
    with pytest.raises(TrainError, match=r"--device cuda:3: expected a CUDA device index below 1"):
        parallel.setup_distributed(device="cuda:3")


@pytest.mark.usefixtures("one_gpu")
def test_a_cuda_index_within_the_devices_is_used_not_dropped() -> None:
    """Main built ``torch.device("cuda")`` for ``--device cuda:N`` in one process: the index was dropped."""
    assert parallel.setup_distributed(device="cuda:0").device == torch.device("cuda:0")
    assert parallel.setup_distributed(device="cuda").device == torch.device("cuda")


@pytest.mark.usefixtures("one_gpu")
def test_a_cuda_index_under_torchrun_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun each rank takes cuda:LOCAL_RANK: an index would be ignored silently."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TrainError, match=r"--device cuda:0: under torchrun each rank uses cuda:LOCAL_RANK"):
        parallel.setup_distributed(device="cuda:0")


# ----------------------------------------------------------------------------- data


def test_a_zero_token_shard_is_refused_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was numpy's "zero-size array to reduction operation maximum" with a traceback."""
    shard = write_llmc_shard(tmp_path / "empty.bin", np.array([], dtype=np.uint16))
    err = train_error_of(tmp_path / "run", "--data", str(shard), capsys=capsys)
    assert f"data path {str(shard)!r} holds no tokens" in err and "num_tokens=0" in err, err


def test_a_directory_of_zero_token_shards_is_refused_and_one_with_tokens_loads(tmp_path: Path) -> None:
    for name in ("a.bin", "b.bin"):
        write_llmc_shard(tmp_path / name, np.array([], dtype=np.uint16))
    with pytest.raises(DataError, match=r"holds no tokens: its llm.c shard\(s\) \(a.bin, b.bin\) have num_tokens=0"):
        load_corpus(tmp_path)
    write_llmc_shard(tmp_path / "c.bin", np.arange(10, dtype=np.uint16))  # one shard with tokens: nothing refused
    assert load_corpus(tmp_path).tolist() == list(range(10))


def test_a_glob_mixing_shards_and_text_is_refused(tmp_path: Path) -> None:
    """Was read as text: the shard's header and token ids became 1,424 bytes of the corpus, silently."""
    write_llmc_shard(tmp_path / "a.bin", np.arange(200, dtype=np.uint16))
    (tmp_path / "b.txt").write_text("hello " * 100)
    with pytest.raises(DataError, match=r"matches both llm.c shards \(a.bin\) and other files \(b.txt\)"):
        load_corpus(str(tmp_path / "*"))
    assert load_corpus(str(tmp_path / "*.bin")).tolist() == list(range(200))  # one kind: loads


def test_a_validation_split_too_small_to_evaluate_is_refused_before_any_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was the loader's "tokens must hold at least ... 65 tokens, got 0" at the first evaluation, after a step,
    naming neither --val-fraction nor --data."""
    err = train_error_of(tmp_path, "--val-fraction", "0", "--eval-interval", "1", capsys=capsys)
    assert "--val-fraction 0.0: the validation split holds 0 of the" in err and "--data 'stdlib'" in err, err
    assert "or --eval-interval 0" in err


def test_a_training_split_too_small_for_a_batch_names_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "small.txt"
    text.write_text("x" * 100)
    err = train_error_of(tmp_path / "run", "--data", str(text), "--val-fraction", "0.9", capsys=capsys)
    assert f"--data {str(text)!r}: the training split holds 10 of its 100 tokens (--val-fraction 0.9)" in err, err


def test_a_small_validation_split_is_fine_when_the_run_does_not_evaluate(tmp_path: Path) -> None:
    records = train_run(tmp_path, "--num-iterations", "1", "--val-fraction", "0", "--eval-interval", "0")
    assert [r["step"] for r in records] == [1]


# ----------------------------------------------------------------------------- resume: the resolved config

RESUME = ["--num-iterations", "4", "--save-interval", "2", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[tuple[Any, ...]]]]:
    """Per model: a run dir holding the step-2 checkpoint of a 4-step run, and the uninterrupted 4-step trace."""
    out = {}
    for model in ("gpt2", "llama3"):
        whole = tmp_path_factory.mktemp(f"whole-{model}")
        reference = trace(train_run(whole, "--model", model, *RESUME))
        half = tmp_path_factory.mktemp(f"half-{model}")
        train_run(half, "--model", model, *RESUME[2:], "--num-iterations", "2")
        out[model] = (half, reference)
    return out


@pytest.mark.parametrize(
    ("model", "flags"),
    [
        ("gpt2", ["--n-layer", "4"]),  # tiny's own n_layer: was "n_layer: checkpoint=None, run=4"
        ("gpt2", ["--n-head", "4"]),
        ("gpt2", ["--n-layer", "4", "--n-head", "4"]),
        ("gpt2", ["--param-groups", "decay"]),  # what no --param-groups builds: was "checkpoint=None, run='decay'"
        ("llama3", ["--n-kv-head", "2"]),  # LLaMA-3 tiny's own n_kv_head
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_resume_with_a_flag_at_its_resolved_value_is_no_change(
    tmp_path: Path, saved_runs: dict[str, Any], model: str, flags: list[str]
) -> None:
    """The resumed run is accepted and continues exactly as the uninterrupted one (its oracle)."""
    half, reference = saved_runs[model]
    run = tmp_path / "run"
    shutil.copytree(half, run)
    records = train_run(run, "--model", model, *RESUME, "--resume", "auto", *flags)
    assert trace(records) == reference


@pytest.mark.parametrize(
    ("flags", "difference"),
    [
        (["--n-layer", "3"], "n_layer: checkpoint=4, run=3"),
        (["--preset", "small"], "n_embd: checkpoint=128, run=384"),
        (["--param-groups", "parts"], "param_groups: checkpoint='decay', run='parts'"),
    ],
)
def test_resume_with_a_real_change_is_still_refused_with_the_resolved_values(
    tmp_path: Path, saved_runs: dict[str, Any], capsys: pytest.CaptureFixture[str], flags: list[str], difference: str
) -> None:
    """The negative control: what does change the model (or the groups) is refused, naming the resolved values."""
    half, _ = saved_runs["gpt2"]
    run = tmp_path / "run"
    shutil.copytree(half, run)
    err = train_error_of(run, *RESUME, "--resume", "auto", *flags, capsys=capsys)
    assert "is incompatible with this run" in err and difference in err, err


def test_resume_with_a_run_length_below_the_checkpoint_step_is_refused(
    tmp_path: Path, saved_runs: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Was "resumed from ... at step 2" and exit 0, having run none of the steps asked for."""
    half, _ = saved_runs["gpt2"]
    run = tmp_path / "run"
    shutil.copytree(half, run)
    err = train_error_of(run, *RESUME[2:], "--num-iterations", "1", "--resume", "auto", capsys=capsys)
    assert "--num-iterations 1 is below step 2 of the checkpoint" in err and "expected at least 2" in err, err


def test_compatible_values_resolve_the_preset_and_keep_what_cannot_be_resolved() -> None:
    from lrkit.train.config import COMPATIBLE_KEYS, compatible_values

    saved = {"model": "gpt2", "preset": "tiny", "n_layer": None, "n_head": None, "n_kv_head": None}
    resolved = compatible_values(saved)
    assert resolved["n_layer"] == 4 and resolved["n_embd"] == 128 and "preset" not in resolved
    assert resolved["param_groups"] == "decay"
    assert compatible_values({**saved, "layer_decay": 0.8})["param_groups"] == "layers"
    unknown = compatible_values({**saved, "preset": "custom"})  # an old checkpoint's preset: compared as given
    assert unknown["preset"] == "custom" and unknown["n_layer"] is None
    assert {"n_embd", "vocab_size", "block_size", "n_kv_head", "ffn_hidden"} <= set(COMPATIBLE_KEYS)
    assert "dropout" not in COMPATIBLE_KEYS  # a resume may change the dropout


# ----------------------------------------------------------------------------- lrkit align


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--group", "bogus"], "--group 'bogus': expected one of classes, layouts, llm, precision, random"),
        (["--group", "random"], "--group random: selects the --random cases, and --random is 0"),
        (["--random", "-1", "--list"], "--random -1: expected K >= 0"),
        (["--source-nproc", "0", "--list"], "--source-nproc 0: expected ranks >= 1"),
        (["--layouts", "--group", "llm", "--list"], "--group llm: --layouts runs its own matrix"),
        (["--json", "{tmp}/missing/rows.json", "--group", "bogus"], "its directory '{tmp}/missing' does not exist"),
        (["--json", "{tmp}", "--list"], "--json {tmp}: is a directory"),
        (["--workdir", "{tmp}/file", "--list"], "--workdir {tmp}/file: is not a directory"),
    ],
    ids=_ids,
)
def test_a_bad_align_argument_is_refused_before_any_case_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Was "0 passed, 0 failed" with exit 0 (or the whole listing, or a traceback after the matrix ran)."""
    (tmp_path / "file").write_text("")
    code = align_main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", out
    assert err.startswith("lrkit align: error: ") and message.replace("{tmp}", str(tmp_path)) in err, err


def test_a_schedule_its_own_checks_refuse_is_a_flag_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was a raw ValueError traceback, exit 1: a warmup longer than a 2-step run leaves the cosine no decay."""
    err = train_error_of(tmp_path, "--lr-scheduler", "cosine", "--warmup-steps", "5", "--min-lr", "3e-4", capsys=capsys)
    assert "--lr-scheduler" in err and "total_steps must be > warmup_steps" in err and "warmup_steps=5" in err, err
