"""Data: byte tokenizer, llm.c shards, corpora, train/val split and the resumable sequential loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lrkit.train import data
from lrkit.train.data import (
    DEFAULT_STDLIB_BYTES,
    LLMC_HEADER_BYTES,
    ByteTokenizer,
    DataError,
    TokenLoader,
    load_corpus,
    read_llmc_shard,
    stdlib_corpus,
    train_val_split,
    write_llmc_shard,
)

# ----------------------------------------------------------------------------- tokenizer


def test_byte_tokenizer_round_trips_utf8_text() -> None:
    tok = ByteTokenizer()
    text = "def f(x):\n    return 'héllo ✓'\n"
    ids = tok.encode(text)
    assert ids.dtype == np.uint8 and len(ids) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert tok.decode(torch.from_numpy(ids.astype(np.int64))) == text
    assert tok.vocab_size == 256


def test_byte_tokenizer_decodes_a_cut_character_with_a_replacement_and_rejects_non_bytes() -> None:
    tok = ByteTokenizer()
    assert tok.decode(tok.encode("é")[:1]) == "\ufffd"
    with pytest.raises(ValueError, match=r"byte ids in \[0, 256\), got values in \[0, 300\]"):
        tok.decode([0, 300])


# ----------------------------------------------------------------------------- llm.c shards


@pytest.mark.parametrize(
    ("version", "magic", "dtype", "high"), [(1, 20240520, np.uint16, 50257), (7, 20240801, np.uint32, 128256)]
)
def test_llmc_shard_round_trip_and_header_layout(
    tmp_path: Path, version: int, magic: int, dtype: type, high: int
) -> None:
    tokens = np.random.default_rng(0).integers(0, high, size=1000)
    path = write_llmc_shard(tmp_path / "shard.bin", tokens, version=version)
    raw = path.read_bytes()
    header = np.frombuffer(raw[:LLMC_HEADER_BYTES], dtype="<i4")
    assert (header[0], header[1], header[2]) == (magic, version, 1000)
    assert not header[3:].any()
    assert len(raw) == 1024 + 1000 * np.dtype(dtype).itemsize
    read = read_llmc_shard(path)
    assert read.dtype == dtype
    np.testing.assert_array_equal(read, tokens)


def test_write_llmc_shard_rejects_tokens_that_do_not_fit_and_unknown_versions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tokens must be in \[0, 65535\] for version=1"):
        write_llmc_shard(tmp_path / "a.bin", [1, 70000], version=1)
    with pytest.raises(ValueError, match=r"version must be one of \[1, 7\], got version=3"):
        write_llmc_shard(tmp_path / "a.bin", [1, 2], version=3)


def test_read_llmc_shard_rejects_a_bad_magic_number(tmp_path: Path) -> None:
    path = write_llmc_shard(tmp_path / "bad.bin", [1, 2, 3])
    raw = bytearray(path.read_bytes())
    raw[0:4] = np.array([12345], dtype="<i4").tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"bad\.bin: bad llm\.c magic number 12345"):
        read_llmc_shard(path)


def test_read_llmc_shard_rejects_a_version_that_does_not_match_the_magic(tmp_path: Path) -> None:
    path = write_llmc_shard(tmp_path / "v.bin", [1, 2, 3], version=1)
    raw = bytearray(path.read_bytes())
    raw[4:8] = np.array([7], dtype="<i4").tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="magic 20240520 expects version 1, got version=7"):
        read_llmc_shard(path)


def test_read_llmc_shard_rejects_truncated_files(tmp_path: Path) -> None:
    path = write_llmc_shard(tmp_path / "t.bin", np.arange(100), version=7)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"t\.bin: truncated llm\.c shard, header says 100 tokens"):
        read_llmc_shard(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="shorter than the 1024-byte header"):
        read_llmc_shard(path)
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        read_llmc_shard(tmp_path / "nope.bin")


def test_load_corpus_reads_shards_from_a_file_a_directory_or_a_glob_in_sorted_order(tmp_path: Path) -> None:
    write_llmc_shard(tmp_path / "train_001.bin", [3, 4, 5])
    write_llmc_shard(tmp_path / "train_000.bin", [0, 1, 2])
    np.testing.assert_array_equal(load_corpus(str(tmp_path / "train_001.bin")), [3, 4, 5])
    np.testing.assert_array_equal(load_corpus(str(tmp_path)), [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(load_corpus(str(tmp_path / "train_*.bin")), [0, 1, 2, 3, 4, 5])
    assert load_corpus(str(tmp_path)).dtype == np.uint16


def test_load_corpus_rejects_shards_of_different_tokenizers(tmp_path: Path) -> None:
    write_llmc_shard(tmp_path / "a.bin", [1, 2], version=1)
    write_llmc_shard(tmp_path / "b.bin", [1, 2], version=7)
    with pytest.raises(ValueError, match="mix versions"):
        load_corpus(str(tmp_path))


# ----------------------------------------------------------------------------- text corpora


def test_load_corpus_reads_a_text_file_and_a_directory_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("3")
    (tmp_path / "a.txt").write_text("1")
    (tmp_path / "b" / "a.txt").write_text("2")
    (tmp_path / ".hidden").write_text("never")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_text("never")
    assert load_corpus(tmp_path).tobytes() == b"123"
    assert load_corpus(str(tmp_path / "a.txt")).tobytes() == b"1"
    assert load_corpus(str(tmp_path / "**" / "*.txt")).tobytes() == b"123"


def test_a_missing_data_path_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        load_corpus(str(tmp_path / "no_such_dir"))
    with pytest.raises(FileNotFoundError, match=r"\*\.bin.*matches no files"):
        load_corpus(str(tmp_path / "*.bin"))


def test_stdlib_corpus_concatenates_py_files_in_sorted_order_without_site_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for relative, text in {
        "b.py": "B",
        "a/z.py": "AZ",
        "a.py": "A",
        "a/b/c.py": "ABC",
        "notes.txt": "never",
        "site-packages/pkg.py": "never",
        "__pycache__/a.py": "never",
    }.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    monkeypatch.setattr(data.sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    # sorted(Path) order: a/b/c.py, a/z.py, a.py, b.py
    assert stdlib_corpus(max_bytes=None).tobytes() == b"ABCAZAB"
    assert stdlib_corpus(max_bytes=4).tobytes() == b"ABCA"
    assert load_corpus("stdlib").tobytes() == b"ABCAZAB"


def test_the_real_stdlib_corpus_is_python_source_deterministic_and_capped() -> None:
    first = stdlib_corpus(max_bytes=1_000_000)
    assert first.dtype == np.uint8 and first.size == 1_000_000
    np.testing.assert_array_equal(first, stdlib_corpus(max_bytes=1_000_000))
    text = first.tobytes().decode("utf-8", errors="replace")
    assert "def " in text and "import " in text
    default = load_corpus(None)
    assert default.size == DEFAULT_STDLIB_BYTES
    np.testing.assert_array_equal(default[:1_000_000], first)


def test_train_val_split_takes_the_last_fraction_as_validation() -> None:
    tokens = np.arange(1000)
    train, val = train_val_split(tokens, 0.05)
    assert (train.size, val.size) == (950, 50)
    np.testing.assert_array_equal(np.concatenate([train, val]), tokens)
    assert train_val_split(tokens, 0.0)[1].size == 0
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got val_fraction=1.0"):
        train_val_split(tokens, 1.0)


# ----------------------------------------------------------------------------- loader


def test_loader_yields_int64_batches_with_targets_shifted_by_one() -> None:
    loader = TokenLoader(np.arange(10_000, dtype=np.uint16), batch_size=4, seq_len=8)
    x, y = loader.next_batch()
    assert x.shape == y.shape == (4, 8) and x.dtype == y.dtype == torch.int64
    torch.testing.assert_close(x.flatten(), torch.arange(32))
    torch.testing.assert_close(y.flatten(), torch.arange(1, 33))
    x2, _ = loader.next_batch()
    torch.testing.assert_close(x2.flatten(), torch.arange(32, 64))


def test_data_parallel_ranks_read_disjoint_adjacent_chunks() -> None:
    tokens = np.arange(100_000)
    B, T, W = 2, 16, 3
    loaders = [TokenLoader(tokens, B, T, rank=r, world_size=W) for r in range(W)]
    single = TokenLoader(tokens, B * W, T)  # one rank reading everything the W ranks read, in rank order
    seen: set[int] = set()
    for _ in range(5):
        batches = [loader.next_batch()[0] for loader in loaders]
        for x in batches:
            assert seen.isdisjoint(x.flatten().tolist())
            seen.update(x.flatten().tolist())
        torch.testing.assert_close(torch.cat(batches), single.next_batch()[0])
    assert all(loader.position == 5 * B * T * W for loader in loaders)


def test_loader_wraps_to_the_start_and_counts_epochs() -> None:
    tokens = np.arange(100)
    loader = TokenLoader(tokens, batch_size=2, seq_len=10)  # 20 tokens per step: 4 full steps fit in 100 (+1)
    first = [loader.next_batch()[0] for _ in range(4)]
    assert loader.epoch == 0
    x, _ = loader.next_batch()
    assert loader.epoch == 1
    torch.testing.assert_close(x, first[0])


def test_the_last_batch_that_exactly_fits_is_read_before_wrapping() -> None:
    """Three steps of B*T = 20 need 3 * 20 + 1 tokens (the last target is one token past the last input)."""
    tokens = np.arange(3 * 20 + 1)
    loader = TokenLoader(tokens, batch_size=2, seq_len=10)
    for step in range(3):
        x, y = loader.next_batch()
        assert torch.equal(x.flatten(), torch.arange(20 * step, 20 * (step + 1)))
        assert torch.equal(y.flatten(), torch.arange(20 * step + 1, 20 * (step + 1) + 1))
        assert loader.epoch == 0
    x, _ = loader.next_batch()
    assert loader.epoch == 1
    assert torch.equal(x.flatten(), torch.arange(20))


def test_resuming_from_state_dict_gives_identical_batches() -> None:
    tokens = np.random.default_rng(0).integers(0, 256, size=5_000).astype(np.uint8)
    loader = TokenLoader(tokens, batch_size=3, seq_len=50, rank=1, world_size=2)
    for _ in range(20):  # crosses an epoch boundary: 300 tokens per step over 5000
        loader.next_batch()
    state = json.loads(json.dumps(loader.state_dict()))  # state is plain JSON data
    expected = [loader.next_batch() for _ in range(30)]
    resumed = TokenLoader(tokens, batch_size=3, seq_len=50, rank=1, world_size=2)
    resumed.load_state_dict(state)
    for want, got in zip(expected, (resumed.next_batch() for _ in range(30))):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert resumed.state_dict() == loader.state_dict()


def test_loader_state_from_other_data_is_rejected() -> None:
    loader = TokenLoader(np.arange(1000), batch_size=2, seq_len=8)
    with pytest.raises(ValueError, match="num_tokens=999"):
        loader.load_state_dict({"position": 16, "epoch": 0, "num_tokens": 999})
    with pytest.raises(ValueError, match="missing"):
        loader.load_state_dict({"epoch": 0})


def test_a_loader_position_past_the_end_of_the_data_is_refused_and_changes_nothing() -> None:
    loader = TokenLoader(np.arange(1000), batch_size=2, seq_len=8)
    loader.next_batch()
    before = loader.state_dict()
    with pytest.raises(DataError, match=r"position must be in \[0, 1000\], got position=1001"):
        loader.load_state_dict({"position": 1001, "epoch": 0, "num_tokens": 1000})
    with pytest.raises(DataError, match=r"position must be in \[0, 1000\], got position=-1"):
        loader.load_state_dict({"position": -1, "epoch": 0, "num_tokens": 1000})
    assert loader.state_dict() == before


def test_a_loader_position_at_the_end_of_the_data_resumes_into_the_next_epoch() -> None:
    loader = TokenLoader(np.arange(1000), batch_size=2, seq_len=8)
    loader.load_state_dict({"position": 1000, "epoch": 4, "num_tokens": 1000})
    x, _ = loader.next_batch()
    assert loader.epoch == 5
    assert torch.equal(x.flatten(), torch.arange(16))


def test_loader_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match=r"at least batch_size \* seq_len \* world_size \+ 1 = 65 tokens, got 64"):
        TokenLoader(np.arange(64), batch_size=4, seq_len=8, world_size=2)
    with pytest.raises(ValueError, match="rank must be in"):
        TokenLoader(np.arange(1000), batch_size=1, seq_len=8, rank=2, world_size=2)
    with pytest.raises(ValueError, match="seq_len must be >= 1, got seq_len=0"):
        TokenLoader(np.arange(1000), batch_size=1, seq_len=0)


# ----------------------------------------------------------------------------- the random order


def _window_starts(x: torch.Tensor, seq_len: int) -> list[int]:
    """With tokens = arange, each row of x starts at its window's first token: the window index times seq_len."""
    starts = x[:, 0].tolist()
    assert all(s % seq_len == 0 for s in starts)
    return [s // seq_len for s in starts]


def test_the_random_order_reads_whole_windows_each_once_per_epoch() -> None:
    """Every row is a window of seq_len + 1 consecutive tokens; an epoch reads every window once, in an order that is
    not the sequential one, and the next epoch reads them in another order."""
    B, T = 4, 8
    tokens = np.arange(B * T * 10 + 1)  # 40 windows, 10 updates per epoch, no tail
    loader = TokenLoader(tokens, B, T, order="random", seed=3)
    epochs: list[list[int]] = [[], []]
    for epoch in range(2):
        for _ in range(10):
            x, y = loader.next_batch()
            assert torch.equal(y, x + 1)  # tokens = arange: targets are the inputs shifted by one, row by row
            epochs[epoch] += _window_starts(x, T)
            assert loader.epoch == epoch
    for order in epochs:
        assert sorted(order) == list(range(40)) and order != list(range(40))
    assert epochs[0] != epochs[1]
    assert loader.next_batch() and loader.epoch == 2


def test_the_random_order_is_a_seeded_permutation_of_the_sequential_order() -> None:
    """The k-th sequence of the random order is window perm[k] of numpy's permutation for (seed, epoch): the
    sequential order's rows, reordered."""
    B, T = 3, 16
    tokens = np.random.default_rng(1).integers(0, 256, size=2_000).astype(np.uint8)
    windows = (tokens.size - 1) // T
    sequential = TokenLoader(tokens, 1, T)
    rows = {}
    for k in range(windows):  # every whole window of the split, in order, one per batch
        x, y = sequential.next_batch()
        rows[k] = (x[0], y[0])
    shuffled = TokenLoader(tokens, B, T, order="random", seed=7)
    perm = np.random.default_rng([7, 0]).permutation(windows)
    for call in range(windows // B):
        x, y = shuffled.next_batch()
        for i in range(B):
            want_x, want_y = rows[int(perm[call * B + i])]
            assert torch.equal(x[i], want_x) and torch.equal(y[i], want_y)
    seeds = [TokenLoader(tokens, B, T, order="random", seed=seed).next_batch()[0] for seed in (7, 8)]
    assert not torch.equal(*seeds)


@pytest.mark.parametrize(("world_size", "accumulation"), [(1, 4), (2, 2), (4, 1)])
def test_the_random_order_reads_the_same_update_on_any_split_into_ranks_and_micro_batches(
    world_size: int, accumulation: int
) -> None:
    """An update of 8 sequences, read as world_size ranks x accumulation micro-batches, holds the same rows as one
    rank reading all 8 at once, across the epoch wrap."""
    B_total, T = 8, 10
    tokens = np.arange(1_000)  # 99 windows: 12 updates per epoch, then a wrap
    B = B_total // (world_size * accumulation)
    whole = TokenLoader(tokens, B_total, T, order="random", seed=5)
    loaders = [
        TokenLoader(tokens, B, T, rank=r, world_size=world_size, accumulation=accumulation, order="random", seed=5)
        for r in range(world_size)
    ]
    for _ in range(30):
        want = whole.next_batch()[0]
        got = [loader.next_batch()[0] for _ in range(accumulation) for loader in loaders]
        # micro-batch-major, then rank: the order in which the sequential loader lays out an update
        assert sorted(torch.cat(got)[:, 0].tolist()) == sorted(want[:, 0].tolist())
    assert {loader.epoch for loader in loaders} == {whole.epoch} == {2}


def test_the_random_order_resumes_exactly_and_refuses_another_order_or_seed() -> None:
    tokens = np.random.default_rng(0).integers(0, 256, size=5_000).astype(np.uint8)
    loader = TokenLoader(tokens, batch_size=3, seq_len=50, rank=1, world_size=2, order="random", seed=11)
    for _ in range(20):  # crosses an epoch boundary
        loader.next_batch()
    state = json.loads(json.dumps(loader.state_dict()))
    assert state["order"] == "random" and state["seed"] == 11 and state["epoch"] == 1
    expected = [loader.next_batch() for _ in range(30)]
    resumed = TokenLoader(tokens, batch_size=3, seq_len=50, rank=1, world_size=2, order="random", seed=11)
    resumed.load_state_dict(state)
    for want, got in zip(expected, (resumed.next_batch() for _ in range(30))):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    before = resumed.state_dict()
    for other in (
        TokenLoader(tokens, batch_size=3, seq_len=50, order="random", seed=12),
        TokenLoader(tokens, batch_size=3, seq_len=50),
    ):
        with pytest.raises(DataError, match=r"saved with --data-order random \(--data-seed 11\)"):
            other.load_state_dict(state)
    with pytest.raises(DataError, match=r"saved with --data-order sequential .* reads --data-order random"):
        resumed.load_state_dict({"position": 0, "epoch": 0, "num_tokens": tokens.size})
    with pytest.raises(DataError, match="position must be a multiple of seq_len=50 in the random order, got 75"):
        resumed.load_state_dict({**state, "position": 75})
    assert resumed.state_dict() == before
    with pytest.raises(DataError, match=r"order must be one of \['sequential', 'random'\], got order='shuffled'"):
        TokenLoader(tokens, batch_size=3, seq_len=50, order="shuffled")


def test_a_run_in_the_random_order_resumes_exactly_and_differs_from_the_sequential_one(tmp_path: Path) -> None:
    from tests.conftest import chained_run, trace

    flags = ("--data-order", "random", "--data-seed", "2", "--eval-interval", "4", "--eval-iters", "3")
    straight = chained_run(tmp_path / "a", "--num-iterations", "8", *flags)
    chained_run(tmp_path / "b", "--num-iterations", "4", "--save-interval", "4", *flags)
    resumed = chained_run(tmp_path / "b", "--num-iterations", "8", "--resume", "auto", *flags)
    assert trace(resumed) == trace(straight)
    sequential = chained_run(tmp_path / "c", "--num-iterations", "8", "--eval-interval", "4", "--eval-iters", "3")
    assert [r["loss"] for r in sequential] != [r["loss"] for r in straight]
    assert [r["step"] for r in straight if "val_loss" in r] == [4, 8]


def test_the_validation_loss_and_its_standard_error_are_those_of_the_micro_batch_losses(tmp_path: Path) -> None:
    """evaluate() against a direct computation: the micro-batches of the split's start, in order, their mean and
    the standard error of the mean (numpy's sample standard deviation / sqrt(n))."""
    from lrkit.train.arguments import config_from_args
    from lrkit.train.components import evaluate
    from lrkit.train.loop import setup
    from lrkit.train.parallel import DistContext
    from tests.conftest import TINY, parse

    config = config_from_args(parse(*TINY, "--run-dir", str(tmp_path), "--eval-iters", "5"))
    t = setup(config, DistContext())
    mean, stderr = evaluate(t.pm, t.val_tokens, t.config, t.ctx, None)
    B, T = t.config.batch.batch_size, t.config.batch.sequence_length
    losses = []
    with torch.no_grad():
        for i in range(5):
            chunk = torch.from_numpy(np.asarray(t.val_tokens[i * B * T : (i + 1) * B * T + 1]).astype(np.int64))
            losses.append(float(t.pm.module(chunk[:-1].view(B, T), chunk[1:].view(B, T))[1]))
    assert mean == pytest.approx(np.mean(losses), rel=1e-12)
    assert stderr == pytest.approx(np.std(losses, ddof=1) / np.sqrt(5), rel=1e-9)
    assert stderr > 0
