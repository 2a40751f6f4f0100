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
