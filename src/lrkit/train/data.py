"""Training data: a byte tokenizer, corpora (the Python standard library, text, llm.c shards), a train/val
split, and a loader (llm.c's sequential order, or a shuffled one) whose position is plain, resumable data.

Nothing is downloaded: the default corpus is the running interpreter's own standard library source.
"""

from __future__ import annotations

import glob
import os
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrkit.train.errors import TrainError

BYTE_VOCAB_SIZE = 256
DEFAULT_STDLIB_BYTES = 8 * 2**20  # 8 MiB: ~0.1 s to load, minutes per epoch for the tiny GPT-2 on 2 CPU cores
#: ``--data-order`` choices (:class:`TokenLoader`).
DATA_ORDERS = ("sequential", "random")

# llm.c token shards: a header of 256 little-endian int32 (magic, version, num_tokens, 0...), then the tokens.
LLMC_HEADER_INTS = 256
LLMC_HEADER_BYTES = LLMC_HEADER_INTS * 4
# version -> (magic, token dtype): version 1 is written for GPT-2 (vocab 50257), version 7 for LLaMA-3 (128256).
LLMC_FORMATS: dict[int, tuple[int, np.dtype[Any]]] = {
    1: (20240520, np.dtype("<u2")),
    7: (20240801, np.dtype("<u4")),
}


class DataError(TrainError):
    """Data the trainer cannot read: a bad llm.c shard, an empty corpus, too few tokens for a batch, a bad loader
    state; the message names the file or the argument and the value."""


class ByteTokenizer:
    """Bytes are tokens: ``encode(text)`` is ``text.encode("utf-8")`` as uint8 ids in [0, 256)."""

    vocab_size = BYTE_VOCAB_SIZE

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()

    def decode(self, tokens: np.ndarray | torch.Tensor | list[int]) -> str:
        """Inverse of ``encode``; bytes that are not valid UTF-8 (e.g. a cut multi-byte character) become U+FFFD."""
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.cpu().numpy()
        array = np.asarray(tokens)
        if array.size and (array.min() < 0 or array.max() >= BYTE_VOCAB_SIZE):
            raise DataError(
                f"tokens must be byte ids in [0, {BYTE_VOCAB_SIZE}), got values in [{array.min()}, {array.max()}]"
            )
        return array.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------- llm.c shards


def write_llmc_shard(path: str | os.PathLike[str], tokens: np.ndarray | list[int], version: int = 1) -> Path:
    """Write ``tokens`` as an llm.c ``.bin`` shard: version 1 stores uint16 ids, version 7 uint32."""
    if version not in LLMC_FORMATS:
        raise DataError(f"version must be one of {sorted(LLMC_FORMATS)}, got version={version!r}")
    magic, dtype = LLMC_FORMATS[version]
    array = np.asarray(tokens)
    if array.ndim != 1:
        raise DataError(f"tokens must be 1-D, got shape {array.shape}")
    limit = np.iinfo(dtype).max
    if array.size and (array.min() < 0 or array.max() > limit):
        raise DataError(
            f"tokens must be in [0, {limit}] for version={version}, got values in [{array.min()}, {array.max()}]"
        )
    header = np.zeros(LLMC_HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = magic, version, array.size
    path = Path(path)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(array.astype(dtype).tobytes())
    return path


def read_llmc_shard(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an llm.c ``.bin`` shard and return its tokens (uint16 for version 1, uint32 for version 7)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"llm.c shard not found: {path}")
    size = path.stat().st_size
    if size < LLMC_HEADER_BYTES:
        raise DataError(
            f"{path}: truncated llm.c shard, {size} bytes is shorter than the {LLMC_HEADER_BYTES}-byte header"
        )
    header = np.fromfile(path, dtype="<i4", count=LLMC_HEADER_INTS)
    magic, version, num_tokens = int(header[0]), int(header[1]), int(header[2])
    by_magic = {m: v for v, (m, _) in LLMC_FORMATS.items()}
    if magic not in by_magic:
        raise DataError(f"{path}: bad llm.c magic number {magic}, expected one of {sorted(by_magic)}")
    if version != by_magic[magic]:
        raise DataError(f"{path}: llm.c magic {magic} expects version {by_magic[magic]}, got version={version}")
    dtype = LLMC_FORMATS[version][1]
    expected = LLMC_HEADER_BYTES + num_tokens * dtype.itemsize
    if num_tokens < 0 or size != expected:
        state = "truncated" if size < expected else "oversized"
        raise DataError(
            f"{path}: {state} llm.c shard, header says {num_tokens} tokens ({expected} bytes), file has {size} bytes"
        )
    return np.fromfile(path, dtype=dtype, count=num_tokens, offset=LLMC_HEADER_BYTES)


def _read_shards(paths: list[Path], source: str) -> np.ndarray:
    arrays = [read_llmc_shard(p) for p in paths]
    if len({a.dtype for a in arrays}) > 1:
        listing = ", ".join(f"{p.name}: {a.dtype}" for p, a in zip(paths, arrays))
        raise DataError(f"{source}: llm.c shards mix versions ({listing}); use the shards of one tokenizer")
    return np.concatenate(arrays)


# ----------------------------------------------------------------------------- text corpora


def _read_bytes(paths: Iterable[Path], max_bytes: int | None) -> np.ndarray:
    """The files' bytes concatenated, cut after ``max_bytes``; files past the cut are never opened."""
    chunks: list[bytes] = []
    total = 0
    for path in paths:
        data = path.read_bytes()
        if max_bytes is not None and total + len(data) >= max_bytes:
            chunks.append(data[: max_bytes - total])
            break
        chunks.append(data)
        total += len(data)
    return np.frombuffer(b"".join(chunks), dtype=np.uint8).copy()


def _files_under(root: Path, suffix: str = "", skip_dirs: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Regular files under ``root`` ending in ``suffix``, recursively and lazily, in sorted path order (the
    order of ``sorted(paths)``: entries of a directory by name, a directory's contents at its name's place).

    Hidden entries, ``__pycache__`` and directories named in ``skip_dirs`` are skipped, so that editor and
    interpreter droppings do not change the corpus; symlinked directories are not followed (as ``os.walk``).
    """
    with os.scandir(root) as scan:
        entries = sorted(
            (e for e in scan if not e.name.startswith(".") and e.name != "__pycache__" and e.name not in skip_dirs),
            key=lambda e: e.name,
        )
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _files_under(Path(entry.path), suffix, skip_dirs)
        elif entry.is_file() and entry.name.endswith(suffix):
            yield Path(entry.path)


def stdlib_corpus(max_bytes: int | None = DEFAULT_STDLIB_BYTES) -> np.ndarray:
    """The ``.py`` files of the running interpreter's standard library as bytes (vocab 256), uint8.

    Files are concatenated in sorted path order (``site-packages`` excluded, so the corpus does not depend on
    what is installed) and cut after ``max_bytes`` bytes (``None``: all of it, about 30 MB for CPython 3.11).
    Deterministic for a given Python version; the default 8 MiB loads in about 0.1 s.
    """
    if max_bytes is not None and max_bytes < 1:
        raise DataError(f"max_bytes must be >= 1 or None, got max_bytes={max_bytes!r}")
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(f"standard library directory not found: {root}")
    tokens = _read_bytes(_files_under(root, ".py", frozenset({"site-packages", "dist-packages"})), max_bytes)
    if tokens.size == 0:
        raise FileNotFoundError(f"no .py files found in the standard library directory {root}")
    return tokens


def load_corpus(spec: str | os.PathLike[str] | None = None, max_bytes: int | None = DEFAULT_STDLIB_BYTES) -> np.ndarray:
    """Load the corpus named by ``spec`` as a 1-D token array:

    - ``None`` or ``"stdlib"``: the standard library's source as bytes (uint8; ``max_bytes`` caps it);
    - a ``.bin`` file, a directory holding ``.bin`` files (its top-level ``*.bin``), or a glob whose matches are
      all ``.bin``: llm.c shards, concatenated in sorted order (uint16 for version 1 / GPT-2, uint32 for
      version 7 / LLaMA-3);
    - any other file, directory (recursively) or glob: the files' bytes (uint8), concatenated in sorted order.

    A path or glob that matches nothing raises ``FileNotFoundError`` naming it; a glob that matches both
    ``.bin`` shards and other files, or shards that hold no tokens, raise :class:`DataError`.
    """
    if spec is None or str(spec) == "stdlib":
        return stdlib_corpus(max_bytes)
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_file():
        paths = [path]
    elif path.is_dir():
        shards = sorted(path.glob("*.bin"))
        paths = shards if shards else list(_files_under(path))
    elif glob.has_magic(text):
        paths = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file())
    else:
        raise FileNotFoundError(f"data path does not exist: {text!r}")
    if not paths:
        raise FileNotFoundError(f"data path {text!r} matches no files")
    shard_names = [p.name for p in paths if p.suffix == ".bin"]
    if glob.has_magic(text) and not path.exists() and 0 < len(shard_names) < len(paths):
        # Read as text, the shards' headers and token ids would become bytes of the corpus, silently.
        others = [p.name for p in paths if p.suffix != ".bin"]
        raise DataError(
            f"data path {text!r} matches both llm.c shards ({', '.join(shard_names[:3])}) and other files "
            f"({', '.join(others[:3])}); expected a glob of one kind: only .bin shards, or only text"
        )
    if all(p.suffix == ".bin" for p in paths):
        tokens = _read_shards(paths, text)
        if tokens.size == 0:  # every header says num_tokens=0: nothing to train on
            names = ", ".join(p.name for p in paths)
            raise DataError(
                f"data path {text!r} holds no tokens: its llm.c shard(s) ({names}) have num_tokens=0; "
                "expected at least one token"
            )
        return tokens
    tokens = _read_bytes(paths, None)
    if tokens.size == 0:
        raise DataError(f"data path {text!r} holds no bytes")
    return tokens


def train_val_split(tokens: np.ndarray, val_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Split deterministically: the last ``round(len * val_fraction)`` tokens are validation, the rest train.

    Returns views, not copies."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got val_fraction={val_fraction!r}")
    n_val = round(len(tokens) * val_fraction)
    return tokens[: len(tokens) - n_val], tokens[len(tokens) - n_val :]


def check_split_fits(
    train: np.ndarray,
    val: np.ndarray,
    batch_size: int,
    seq_len: int,
    world_size: int,
    evaluate: bool,
    path: str,
    val_fraction: float,
) -> None:
    """Both splits hold the tokens of one micro-batch (``batch_size * seq_len * world_size + 1``), before any step.

    The training split always must; the validation split only when the run evaluates (``evaluate``), which
    would otherwise fail at the first evaluation, after the steps before it. ``path`` (``--data``) and
    ``val_fraction`` (``--val-fraction``) are named in the :class:`DataError`.
    """
    needed = batch_size * seq_len * world_size + 1
    sizes = f"--batch-size x --sequence-length x data-parallel size + 1 = {batch_size} x {seq_len} x {world_size} + 1"
    total = train.size + val.size
    if train.size < needed:
        raise DataError(
            f"--data {path!r}: the training split holds {train.size} of its {total} tokens (--val-fraction "
            f"{val_fraction}), fewer than one micro-batch needs: {sizes} = {needed}; expected more data or a "
            "smaller batch"
        )
    if evaluate and val.size < needed:
        raise DataError(
            f"--val-fraction {val_fraction}: the validation split holds {val.size} of the {total} tokens of "
            f"--data {path!r}, fewer than one evaluation micro-batch needs: {sizes} = {needed}; expected a larger "
            "--val-fraction, more data, a smaller batch, or --eval-interval 0"
        )


# ----------------------------------------------------------------------------- loader


class TokenLoader:
    """(x, y) batches over a 1-D token array: in order, as llm.c and InfiniTrain read their shards, or shuffled.

    Each call reads, for data-parallel ``rank`` of ``world_size``, the ``batch_size * seq_len + 1`` tokens
    starting at ``position + rank * batch_size * seq_len``; ``x`` is the first B*T of them and ``y`` the same
    shifted by one, both int64 of shape (B, T). Then ``position`` advances by ``B * T * world_size``, so the
    ranks read disjoint, adjacent chunks.

    An optimizer update reads ``accumulation`` such calls: ``B * T * world_size * accumulation`` tokens, the
    global batch. When the next *update* would read past the end, ``position`` wraps to 0 before its first
    call and ``epoch`` increments (the short tail is skipped, as in llm.c). The wrap depends only on the global
    batch, not on how it is split into ranks and micro-batches, so a run resumed on another world size with the
    same global batch reads the same tokens in every update: none repeated, none skipped. (A data split
    smaller than one update wraps per call instead.)

    ``order="random"`` reads the same stream of sequences in a shuffled order: the split is cut into
    ``n = (len - 1) // seq_len`` windows of ``seq_len + 1`` tokens (window ``k`` starts at token ``k * seq_len``),
    and the ``k``-th sequence of epoch ``e`` is window ``perm_e[k]``, with ``perm_e`` a permutation of ``range(n)``
    drawn from ``numpy.random.default_rng([seed, e])``. Each row of a batch is then its own window, so
    consecutive batches come from anywhere in the corpus (in order they come from the same files). Positions,
    the wrap and the state are those of the sequential order, counted in ``seq_len`` tokens per sequence.

    ``state_dict()`` is ``{"position", "epoch", "num_tokens"}`` (plain ints, the same on every rank), plus
    ``"order"`` and ``"seed"`` in the random order; loading it reproduces exactly the batches that would have
    followed.
    """

    def __init__(
        self,
        tokens: np.ndarray | torch.Tensor,
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        accumulation: int = 1,
        order: str = "sequential",
        seed: int = 0,
    ) -> None:
        if order not in DATA_ORDERS:
            raise DataError(f"order must be one of {list(DATA_ORDERS)}, got order={order!r}")
        checked = (("batch_size", batch_size), ("seq_len", seq_len), ("world_size", world_size),
                   ("accumulation", accumulation))  # fmt: skip
        for name, value in checked:
            if value < 1:
                raise DataError(f"{name} must be >= 1, got {name}={value}")
        if not 0 <= rank < world_size:
            raise DataError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        array = tokens.cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
        if array.ndim != 1:
            raise DataError(f"tokens must be a 1-D array, got shape {array.shape}")
        needed = batch_size * seq_len * world_size + 1
        if array.size < needed:
            raise DataError(
                f"tokens must hold at least batch_size * seq_len * world_size + 1 = {needed} tokens, "
                f"got {array.size} (batch_size={batch_size}, seq_len={seq_len}, world_size={world_size})"
            )
        self.tokens = array
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.rank = rank
        self.world_size = world_size
        self.accumulation = accumulation
        self.order = order
        self.seed = seed
        self.position = 0
        self.epoch = 0
        self._micro = 0  # calls done in the current update
        self._perm: tuple[int, np.ndarray] | None = None  # (epoch, its permutation of the windows)

    @property
    def tokens_per_step(self) -> int:
        """Tokens consumed per call across all ranks: B * T * world_size."""
        return self.batch_size * self.seq_len * self.world_size

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (x, y) pair for this rank, each (batch_size, seq_len) int64 on the CPU."""
        update = self.tokens_per_step * self.accumulation
        starts_update = self._micro == 0 and update + 1 <= self.tokens.size
        if (starts_update and self.position + update + 1 > self.tokens.size) or (
            self.position + self.tokens_per_step + 1 > self.tokens.size
        ):
            self.position = 0
            self.epoch += 1
        self._micro = (self._micro + 1) % self.accumulation
        start = self.position + self.rank * self.batch_size * self.seq_len
        self.position += self.tokens_per_step
        if self.order == "random":
            first = start // self.seq_len  # the sequence index of this rank's first row
            windows = self.permutation(self.epoch)[first : first + self.batch_size] * self.seq_len
            rows = self.tokens[windows[:, None] + np.arange(self.seq_len + 1)].astype(np.int64)
            chunk = torch.from_numpy(rows)
            return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()
        chunk = torch.from_numpy(self.tokens[start : start + self.batch_size * self.seq_len + 1].astype(np.int64))
        x = chunk[:-1].view(self.batch_size, self.seq_len)
        y = chunk[1:].view(self.batch_size, self.seq_len)
        return x, y

    def permutation(self, epoch: int) -> np.ndarray:
        """The random order's window of each sequence in ``epoch``: a permutation of ``range((len - 1) // seq_len)``,
        the same on every rank and after a resume (it depends only on ``seed``, ``epoch`` and the split's size)."""
        if self._perm is None or self._perm[0] != epoch:
            windows = (self.tokens.size - 1) // self.seq_len
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(windows))
        return self._perm[1]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def reset(self) -> None:
        """Back to the first batch (e.g. before each evaluation pass over the validation split)."""
        self.position = 0
        self.epoch = 0
        self._micro = 0

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"position": self.position, "epoch": self.epoch, "num_tokens": int(self.tokens.size)}
        if self.order != "sequential":
            state.update(order=self.order, seed=self.seed)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()``; the token array must be the same length as when it was saved."""
        missing = sorted({"position", "epoch"} - set(state))
        if missing:
            raise DataError(f"loader state is missing {missing}, got keys {sorted(state)}")
        if "num_tokens" in state and int(state["num_tokens"]) != self.tokens.size:
            raise DataError(
                f"loader state was saved for num_tokens={state['num_tokens']}, "
                f"but this loader has {self.tokens.size} tokens: the data changed"
            )
        saved = (state.get("order", "sequential"), int(state.get("seed", 0)))
        if saved[0] != self.order or (self.order != "sequential" and saved[1] != self.seed):
            raise DataError(
                f"loader state was saved with --data-order {saved[0]} (--data-seed {saved[1]}), but this loader reads "
                f"--data-order {self.order} (--data-seed {self.seed}): resuming would read other batches; expected "
                "the saved order and seed"
            )
        position = int(state["position"])
        if not 0 <= position <= self.tokens.size:
            raise DataError(f"position must be in [0, {self.tokens.size}], got position={position}")
        if self.order == "random" and position % self.seq_len:
            raise DataError(
                f"position must be a multiple of seq_len={self.seq_len} in the random order, got {position}"
            )
        self.position = position
        self.epoch = int(state["epoch"])
        self._micro = 0  # checkpoints are taken between updates
