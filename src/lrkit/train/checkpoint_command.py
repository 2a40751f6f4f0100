"""``lrkit checkpoint inspect PATH``, ``lrkit checkpoint export PATH -o model.safetensors`` and
``lrkit checkpoint average PATH [PATH ...] -o OUT``.

All read either checkpoint format (:mod:`lrkit.train.checkpoint`): a full checkpoint's file
(``step_XXXXXXXX.pt``) or a sharded one's directory (``step_XXXXXXXX/``), or a run directory, whose newest
usable checkpoint they take. Neither needs ``torchrun``: a sharded checkpoint is read by this process alone.

* **inspect** (:func:`inspect_checkpoint`): the step, the tokens, the schedule's clocks, its spec, each param
  group's LR *now* (the LR a run resumed from this checkpoint uses for its next update, step + 1) and *next*
  (step + 2), the config, the layout it was saved from, its size on disk and the model's parameter count.
  The LRs come from the schedule rebuilt from the checkpoint's state, as resuming rebuilds it
  (:meth:`lrkit.runtime.TrainingSchedule.load_state_dict`), on a stand-in optimizer holding the saved param
  groups' hyperparameters.
* **export** (:func:`export_model`): the model's weights as one safetensors file. Tied weights (GPT-2's
  ``lm_head.weight`` is ``transformer.wte.weight``) are stored once, under the name the sharded format keeps
  (the first in the model's state dict), and the file's metadata ``tied`` maps each left-out name to the
  stored one: safetensors refuses tensors that share memory, and a copy would double the embedding on disk
  and lose the tie on load. ``safetensors.torch.load_model(model, path)`` restores it (so does
  ``model.load_state_dict(tensors, strict=False)``, the tied name being the same parameter).
* **average** (:func:`average_checkpoints`): the weighted mean of the models of several checkpoints of one
  model, ``sum_i w_i * theta_i / sum_i w_i`` per tensor (uniform without ``--weights``; computed in float64,
  stored in the tensors' dtype), written atomically to ``OUT``: a ``.safetensors`` file (as export writes
  one), or else a full checkpoint holding the mean model and the rest of the newest input (its step, config,
  schedule and, for a full checkpoint, its optimizer, data position and RNG), which ``inspect``, ``export``
  and ``lrkit train --resume OUT`` read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lrkit.runtime import TrainingSchedule
from lrkit.runtime.resume import ResumeError
from lrkit.schedulers.base import StateError
from lrkit.schedules.batch import BatchRamp
from lrkit.train import checkpoint as ckpt
from lrkit.train.errors import TrainError

__all__ = [
    "add_checkpoint_arguments",
    "average_checkpoints",
    "export_model",
    "format_inspection",
    "human_bytes",
    "inspect_checkpoint",
    "model_tensors",
    "resolve_checkpoint",
    "run_checkpoint",
    "schedule_lrs",
]

#: What a PATH argument may be, for the error messages.
EXPECTED = (
    "expected a checkpoint (a step_XXXXXXXX.pt file or a sharded step_XXXXXXXX/ directory) or a run directory "
    "holding checkpoints/"
)
#: Errors of a schedule that cannot be rebuilt from a checkpoint's state (inspect then shows no LR, and why).
_SCHEDULE_ERRORS: tuple[type[Exception], ...] = (ResumeError, StateError, TrainError, ValueError, TypeError)


# ----------------------------------------------------------------------------- finding and reading


def resolve_checkpoint(path: str | os.PathLike[str]) -> tuple[Path, list[tuple[Path, str]]]:
    """The checkpoint ``path`` names: itself (a checkpoint file or a sharded checkpoint's directory), or a run
    directory's (or a ``checkpoints/`` folder's) newest usable checkpoint, with the newer ones skipped and why.

    Raises ``CheckpointError`` naming ``path`` and what was expected when it does not exist, or is a directory
    without checkpoints, or one whose checkpoints are all unusable."""
    given = Path(path)
    if not given.exists():
        raise ckpt.CheckpointError(f"{given} does not exist; {EXPECTED}")
    if given.is_file() or ckpt.is_checkpoint(given) or (given / ckpt.TRAINER_FILE).is_file():
        return given, []
    folder = given / ckpt.CHECKPOINT_DIR if (given / ckpt.CHECKPOINT_DIR).is_dir() else given
    candidates = ckpt.checkpoint_files(folder)
    if not candidates:
        raise ckpt.CheckpointError(f"{given} is a directory without checkpoints (none in it or in its "
                                   f"{ckpt.CHECKPOINT_DIR}/); {EXPECTED}")  # fmt: skip
    found, rejected = ckpt.select_checkpoint(candidates, ("step", "model"))
    if found is None:
        reasons = "\n".join(f"  {p.name}: {why}" for p, why in rejected)
        raise ckpt.CheckpointError(f"none of the {len(rejected)} checkpoint(s) in {folder} is usable:\n{reasons}")
    return found, rejected


def _load(path: Path) -> dict[str, Any]:
    """The payload of checkpoint ``path``; ``CheckpointError`` naming it and what was expected otherwise."""
    try:
        payload = ckpt.load_checkpoint(path, required_keys=("step",), mmap=True)
    except ckpt.CheckpointError as err:
        raise ckpt.CheckpointError(f"{path} is not a usable lrkit checkpoint: {err}; {EXPECTED}") from err
    if not isinstance(payload.get("model"), (dict, ckpt.ShardedState)):
        raise ckpt.CheckpointError(f"checkpoint {path} holds no model state; it has {sorted(payload)}")
    return payload


def _is_sharded(payload: Mapping[str, Any]) -> bool:
    return isinstance(payload.get("model"), ckpt.ShardedState)


def _model_of(payload: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The model's name and preset, from the sectioned config (or the flat one of an older checkpoint)."""
    section = (payload.get("train_config") or {}).get("model") or {}
    flat = payload.get("config") or {}
    return section.get("name", flat.get("model")), section.get("preset", flat.get("preset"))


def _size_on_disk(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def human_bytes(n: int) -> str:
    """``n`` bytes in binary units: ``10.3 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _parameter_count(payload: Mapping[str, Any]) -> int:
    """Elements of the model's tensors, a tied weight counted once (:func:`model_tensors`; a sharded
    checkpoint's from its index, without reading its tensors)."""
    model = payload["model"]
    if isinstance(model, ckpt.ShardedState):
        return sum(_numel(shape) for shape in model.shapes(ckpt.MODEL_PREFIX).values())
    tensors, _ = model_tensors(payload)
    return sum(v.numel() for v in tensors.values())


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for size in shape:
        n *= int(size)
    return n


# ----------------------------------------------------------------------------- the schedule's LRs


def _plain(value: Any) -> Any:
    """A param group's value as plain data (a ``--compile`` run holds its LRs as tensors)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value


def _saved_groups(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The saved param groups' hyperparameters (no parameters): the full format's optimizer state dict's, or
    the ``optimizer_groups`` beside a sharded checkpoint."""
    optimizer = payload.get("optimizer")
    groups = optimizer.get("param_groups") if isinstance(optimizer, Mapping) else payload.get("optimizer_groups")
    if not groups:
        raise TrainError("the checkpoint holds no optimizer param groups (their peak LRs)")
    return [{k: _plain(v) for k, v in g.items() if k != "params"} for g in groups]


def schedule_lrs(payload: Mapping[str, Any], where: str = "the checkpoint") -> dict[str, Any]:
    """Each param group's LR now (the one the next update, ``step + 1``, uses on resume) and next (``step + 2``;
    None for a schedule that follows the loss), from the schedule rebuilt from ``payload``'s state.

    The schedule is rebuilt as resuming rebuilds it (``TrainingSchedule.load_state_dict``), on a stand-in
    optimizer holding copies of the saved param groups (their peaks, ``initial_lr``), and stepped once for the
    next LR with the tokens per update the run had. Raises the schedule's own errors (``ResumeError``,
    ``StateError``, ``ValueError``...) when the state does not rebuild."""
    from lrkit.schedulers.hparams import GRAD_CLIP, HyperparamScheduler

    state = payload.get("schedule", payload)  # flat before 0.2
    if not isinstance(state, Mapping) or "scheduler_spec" not in state:
        raise TrainError("the checkpoint holds no TrainingSchedule state (no scheduler_spec)")
    # A stand-in optimizer (torch's schedulers want one): the saved hyperparameters, one placeholder parameter each.
    scratch = torch.optim.Optimizer(
        [{**g, "params": [torch.zeros(1, requires_grad=True)]} for g in _saved_groups(payload)], defaults={}
    )
    groups = scratch.param_groups
    train_config = payload.get("train_config") or {}
    sequence_length = (train_config.get("batch") or {}).get("sequence_length") or (payload.get("config") or {}).get(
        "sequence_length"
    )
    hparams = [
        HyperparamScheduler(None if key == GRAD_CLIP else scratch, key, saved["schedules"])
        for key, saved in (state.get("hparams") or {}).items()
    ]
    ramp = state.get("batch_ramp")
    batch_ramp = BatchRamp.from_dict(ramp, f"{where}: state['batch_ramp']") if ramp is not None else None
    schedule = TrainingSchedule(
        state["scheduler_spec"],
        scratch,
        backend=state.get("scheduler_backend", "lrkit"),
        tokens_per_step=state.get("tokens_per_step") if batch_ramp is None else None,
        sequence_length=sequence_length,
        hparams=hparams,
        batch_ramp=batch_ramp,
    )
    schedule.load_state_dict(state, policy="strict", where=where)  # the spec asked for is the saved one: no change
    now = schedule.lrs()
    step = int(payload.get("step", schedule.steps))
    names = [g.get("name") for g in groups]
    out: dict[str, Any] = {
        "groups": names if any(n is not None for n in names) else None,
        "now": now,
        "now_step": step + 1,
        "next": None,
        "next_step": step + 2,
        "unit": schedule.unit or "steps",
        "clock": {"steps": schedule.steps, **schedule.clock},
    }
    if schedule.follows_a_metric:
        out["next_note"] = f"{schedule.spec.get('type')} follows the loss: its next LR depends on it"
    elif schedule.unit is not None and schedule.tokens_per_step is None:
        out["next_note"] = "the checkpoint does not say the tokens per update, which this schedule's clock needs"
    else:
        schedule.step()
        out["next"] = schedule.lrs()
    return out


# ----------------------------------------------------------------------------- inspect


def inspect_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What :func:`format_inspection` prints and ``--json`` writes, as plain data: ``path``, ``format``
    (``full``/``sharded``), ``step``, ``tokens``, ``clock`` (``steps``/``tokens``/``samples`` of the successful
    updates), ``spec``, ``lr`` (:func:`schedule_lrs`; ``lr.error`` says why when the schedule does not rebuild),
    ``model`` (name, preset), ``parameters``, ``size`` (bytes, human), ``layout`` (None when not recorded),
    ``config`` (flat), ``train_config`` (sectioned) and ``skipped`` (newer unusable checkpoints of a run
    directory, with why). ``CheckpointError`` when ``path`` is no checkpoint (:func:`resolve_checkpoint`)."""
    found, rejected = resolve_checkpoint(path)
    payload = _load(found)
    state = payload.get("schedule", payload)
    lr: dict[str, Any]
    try:
        lr = schedule_lrs(payload, where=f"the checkpoint {found}")
    except _SCHEDULE_ERRORS as err:
        lr = {"error": f"{type(err).__name__}: {err}"}
    clock = lr.get("clock")
    if clock is None and isinstance(state, Mapping):
        from lrkit.runtime.schedule import saved_clock

        clock = {"steps": state.get("scheduler_steps"), **saved_clock(state, None)}
    name, preset = _model_of(payload)
    size = _size_on_disk(found)
    return {
        "path": str(found),
        "format": "sharded" if _is_sharded(payload) else "full",
        "step": int(payload["step"]),
        "tokens": payload.get("tokens"),
        "clock": clock,
        "spec": state.get("scheduler_spec") if isinstance(state, Mapping) else None,
        "spec_requested": state.get("scheduler_request") if isinstance(state, Mapping) else None,
        "resume_policy": state.get("scheduler_resume_policy") if isinstance(state, Mapping) else None,
        "backend": state.get("scheduler_backend") if isinstance(state, Mapping) else None,
        "tokens_per_step": state.get("tokens_per_step") if isinstance(state, Mapping) else None,
        "batch_ramp": state.get("batch_ramp") if isinstance(state, Mapping) else None,
        "lr": {k: v for k, v in lr.items() if k != "clock"},
        "model": {"name": name, "preset": preset},
        "parameters": _parameter_count(payload),
        "size": {"bytes": size, "human": human_bytes(size)},
        "layout": payload.get("layout"),
        "config": payload.get("config"),
        "train_config": payload.get("train_config"),
        "skipped": [{"path": str(p), "why": why} for p, why in rejected],
        "averages": _averages_of(payload),
    }


def _averages_of(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The counters of the run's weight averages (``--ema``, ``--average-last``), without their tensors; None
    when the checkpoint holds none."""
    saved = payload.get("averages")
    if not isinstance(saved, Mapping):
        return None
    return {k: v for k, v in saved.items() if k not in ("ema", "avg")}


def _lr_text(values: list[float], names: list[Any] | None) -> str:
    labels = names or [f"group {i}" for i in range(len(values))]
    return ", ".join(f"{label} {value!r}" for label, value in zip(labels, values))


def format_inspection(info: Mapping[str, Any]) -> str:
    """:func:`inspect_checkpoint`'s result as text, one field a line; the config last, section by section
    (its unset values left out: ``--json`` has them)."""
    lines = [f"checkpoint   {info['path']}", f"format       {info['format']}", f"step         {info['step']}"]
    lines.append(f"tokens       {info['tokens']}")
    clock = info.get("clock") or {}
    lr = info["lr"]
    counts = f" (the schedule counts {lr['unit']})" if lr.get("unit") else ""
    lines.append("clocks       " + ", ".join(f"{k} {v}" for k, v in clock.items()) + counts)
    if "error" in lr:
        lines.append(f"lr           the schedule does not rebuild from this checkpoint: {lr['error']}")
    else:
        lines.append(f"lr now       {_lr_text(lr['now'], lr['groups'])}  (step {lr['now_step']}, the next update)")
        nxt = _lr_text(lr["next"], lr["groups"]) if lr["next"] is not None else lr.get("next_note", "unknown")
        lines.append(f"lr next      {nxt}  (step {lr['next_step']})")
    lines.append(f"spec         {json.dumps(info['spec'])}")
    ramp = info.get("batch_ramp")
    if isinstance(ramp, Mapping):
        lines.append(f"batch ramp   {json.dumps(dict(ramp))}")
    if info.get("spec_requested") not in (None, info["spec"]):
        lines.append(f"asked for    {json.dumps(info['spec_requested'])} (resume policy {info['resume_policy']})")
    model = info["model"]
    lines.append(f"model        {model['name']} {model['preset']}, {info['parameters']:,} parameters")
    layout = info.get("layout")
    if layout:
        rest = ", ".join(f"{k} {v}" for k, v in layout.items() if k != "name")
        lines.append(f"layout       {layout.get('name')} ({rest})")
    else:
        lines.append("layout       not recorded (saved before lrkit recorded it)")
    size = info["size"]
    lines.append(f"size         {size['human']} ({size['bytes']} bytes)")
    averages = info.get("averages")
    if averages:
        parts = []
        if averages.get("ema_decay") is not None:
            parts.append(f"EMA decay {averages['ema_decay']} over {averages.get('ema_updates')} update(s)")
        if averages.get("average_last") is not None:
            parts.append(f"average of the last {averages['average_last']} steps (from step "
                         f"{averages.get('avg_first')}, {averages.get('avg_count')} averaged so far)")  # fmt: skip
        lines.append("averages     " + "; ".join(parts))
    for skipped in info.get("skipped") or []:
        lines.append(f"skipped      {skipped['path']}: {skipped['why']}")
    sections = info.get("train_config")
    if isinstance(sections, Mapping):
        lines.append("config")
        for section, values in sections.items():
            shown = " ".join(f"{k}={json.dumps(v)}" for k, v in (values or {}).items() if v not in (None, {}, []))
            lines.append(f"  [{section}] {shown}")
    elif isinstance(info.get("config"), Mapping):
        shown = " ".join(f"{k}={json.dumps(v)}" for k, v in info["config"].items() if v not in (None, {}, []))
        lines.append(f"config       {shown}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- export


def _untie(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``tensors`` with each group of names sharing one tensor (same storage, offset, shape and strides: a tied
    weight) kept once, under its first name; and ``{left-out name: kept name}``."""
    kept: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, tensor in tensors.items():
        key = (
            tensor.device,
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tensor.stride(),
            tensor.dtype,
        )
        if tensor.numel() and key in seen:
            tied[name] = seen[key]
            continue
        seen[key] = name
        kept[name] = tensor
    return kept, tied


def _tied_groups(payload: Mapping[str, Any]) -> list[list[str]]:
    """The names of each of the model's tied parameters (GPT-2: ``transformer.wte.weight`` and
    ``lm_head.weight``), in the model's order: the model the config describes, built on the meta device (no
    memory), says which of its names are one parameter. ``[]`` when the config does not build a model."""
    from lrkit.train.models import build_model

    flat = payload.get("config") or {}
    model_config = (payload.get("train_config") or {}).get("model") or flat  # the flat flags: an older checkpoint
    name, preset = _model_of(payload)
    if name is None or preset is None:
        return []
    overrides = {k: model_config[k] for k in ("n_layer", "n_head", "n_kv_head") if model_config.get(k) is not None}
    try:
        with torch.device("meta"):
            model = build_model(str(name), str(preset), **overrides)
    except (ValueError, TypeError, TrainError):
        return []
    by_param: dict[int, list[str]] = {}
    for param_name, param in model.named_parameters(remove_duplicate=False):
        by_param.setdefault(id(param), []).append(param_name)
    return [names for names in by_param.values() if len(names) > 1]


def model_tensors(payload: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The checkpoint's model as tensors by parameter name, each tied weight once, and the tied names left out
    (``{left-out name: stored name}``).

    A full checkpoint gives its state dict: names sharing one tensor are kept once, and so are the names the
    model ties whose tensors are equal (a state dict gathered from FSDP2 holds a tied weight twice, as two
    tensors). A sharded checkpoint is read whole by this process (:func:`lrkit.train.sharded.model_tensors_of`);
    it stores a tied weight once, under the model's first name."""
    model = payload["model"]
    tied: dict[str, str] = {}
    if isinstance(model, ckpt.ShardedState):
        from lrkit.train.sharded import model_tensors_of

        tensors = model_tensors_of(model)
    else:
        tensors, tied = _untie({k: v for k, v in model.items() if isinstance(v, torch.Tensor)})
    for names in _tied_groups(payload):
        present = [n for n in names if n in tensors]
        if not present:
            continue
        kept = present[0]
        for other in names:
            if other == kept:
                continue
            if other not in tensors:
                tied.setdefault(other, kept)
            elif torch.equal(tensors[other], tensors[kept]):
                del tensors[other]
                tied[other] = kept
    return tensors, tied


def export_model(path: str | os.PathLike[str], output: str | os.PathLike[str], force: bool = False) -> dict[str, Any]:
    """Write the model of checkpoint ``path`` (either format, or a run directory's newest) to the safetensors
    file ``output``: contiguous CPU tensors that share no memory, tied weights stored once (the metadata's
    ``tied`` maps each left-out name to the stored one). The metadata also holds ``lrkit_version``, ``step``,
    ``source``, ``checkpoint_format``, ``model``, ``preset`` and ``model_config`` (JSON).

    The file is written to a temporary name beside ``output`` and renamed over it, so a failed export leaves no
    partial file. Returns ``{"path", "source", "tensors", "parameters", "bytes", "tied", "metadata"}``.
    Raises ``CheckpointError`` when ``output`` exists and ``force`` is false, or ``path`` is no checkpoint."""
    try:
        import safetensors.torch  # noqa: F401
    except ImportError as err:
        raise TrainError(
            "lrkit checkpoint export needs the safetensors package: pip install 'lrkit[train]' (or safetensors)"
        ) from err

    import lrkit

    out = Path(output)
    if out.exists() and not force:
        raise ckpt.CheckpointError(f"{out} exists; pass --force to replace it")
    if out.is_dir():
        raise ckpt.CheckpointError(f"{out} is a directory; expected the path of a .safetensors file to write")
    found, _ = resolve_checkpoint(path)
    payload = _load(found)
    tensors, tied = model_tensors(payload)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}  # own memory, no views
    name, preset = _model_of(payload)
    metadata = {
        "format": "pt",
        "lrkit_version": lrkit.__version__,
        "step": str(int(payload["step"])),
        "source": str(found.resolve()),
        "checkpoint_format": "sharded" if _is_sharded(payload) else "full",
        "model": str(name),
        "preset": str(preset),
        "model_config": json.dumps((payload.get("train_config") or {}).get("model") or {}, sort_keys=True),
        "tied": json.dumps(tied, sort_keys=True),
    }
    _write_safetensors(tensors, metadata, out)
    return {
        "path": str(out),
        "source": str(found),
        "tensors": len(tensors),
        "parameters": sum(v.numel() for v in tensors.values()),
        "bytes": out.stat().st_size,
        "tied": tied,
        "metadata": metadata,
    }


def _write_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str], out: Path) -> None:
    """Write ``tensors`` to ``out`` through a temporary file renamed over it (complete or absent)."""
    from safetensors.torch import save_file

    if not out.parent.is_dir():
        raise ckpt.CheckpointError(f"cannot write {out}: its directory {out.parent} does not exist")
    tmp = out.with_name(f".{out.name}{ckpt.TMP_MARK}{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors creates the file private (0600); an export is for sharing
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as err:
        raise ckpt.CheckpointError(f"cannot write {out}: {os.strerror(err.errno) if err.errno else err}") from err
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- average


def average_checkpoints(
    paths: list[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    weights: list[float] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write the weighted mean of the models of checkpoints ``paths`` (either format, or run directories) to
    ``output``: ``mean = sum_i w_i * theta_i / sum_i w_i`` for every tensor, computed in float64 and stored in the
    tensor's dtype; ``weights`` None: all 1 (the uniform mean).

    ``output`` ending in ``.safetensors`` is a safetensors file of the model (tied weights once, as
    :func:`export_model` writes); any other name is a full checkpoint (``torch.load``-able, as the trainer
    writes them): the mean model in place of the newest input's (the highest step, the last given of equal
    steps), with the rest of that input's state, and ``"averaged_from"``: ``[{"path", "step", "weight"}]``.
    A sharded newest input gives no optimizer state (its tensors stay in its directory): such a checkpoint is
    for ``export``, ``inspect`` and evaluation, not ``--resume``. Either is written to a temporary name and
    renamed, so ``output`` is complete or absent.

    Returns ``{"path", "format", "sources", "tensors", "parameters", "bytes"}``. Raises ``CheckpointError``
    when ``output`` exists (without ``force``), a path is no checkpoint, the checkpoints hold different models
    (another model or preset, other tensor names or shapes: each named), or ``weights`` do not fit (their
    number, a negative or non-finite weight, a zero sum).
    """
    import math

    out = Path(output)
    if not paths:
        raise ckpt.CheckpointError("no checkpoint to average; expected one or more PATHs")
    if out.exists() and not force:
        raise ckpt.CheckpointError(f"{out} exists; pass --force to replace it")
    if out.is_dir():
        raise ckpt.CheckpointError(f"{out} is a directory; expected the path of a file to write (.pt or .safetensors)")
    given = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if len(given) != len(paths):
        raise ckpt.CheckpointError(f"--weights has {len(given)} value(s) for {len(paths)} checkpoint(s); "
                                   "expected one weight per checkpoint")  # fmt: skip
    bad = [w for w in given if not (math.isfinite(w) and w >= 0)]
    if bad or sum(given) <= 0:
        raise ckpt.CheckpointError(f"--weights {' '.join(map(str, given))}: expected finite weights >= 0 with a "
                                   "positive sum")  # fmt: skip
    sources = []
    for path in paths:
        found, _ = resolve_checkpoint(path)
        sources.append((found, _load(found)))
    first_path, first = sources[0]
    reference, tied = model_tensors(first)
    models = [reference]  # a full checkpoint's are memory-mapped; a sharded one's are read whole
    for found, payload in sources[1:]:
        models.append(model_tensors(payload)[0])
        _check_same_model(first_path, first, reference, found, payload, models[-1])
    total = sum(given)
    mean: dict[str, torch.Tensor] = {}
    for name, tensor in reference.items():
        acc = torch.zeros(tensor.shape, dtype=torch.float64)
        for model, w in zip(models, given):
            acc += model[name].detach().to("cpu", torch.float64) * (w / total)
        mean[name] = acc.to(tensor.dtype)
    newest = max(range(len(sources)), key=lambda i: (int(sources[i][1]["step"]), i))
    newest_path, newest_payload = sources[newest]
    described = [{"path": str(p), "step": int(pl["step"]), "weight": w} for (p, pl), w in zip(sources, given)]
    if out.suffix == ".safetensors":
        model_name, preset = _model_of(newest_payload)
        metadata = {
            "format": "pt",
            "step": str(int(newest_payload["step"])),
            "source": json.dumps(described),
            "model": str(model_name),
            "preset": str(preset),
            "model_config": json.dumps((newest_payload.get("train_config") or {}).get("model") or {}, sort_keys=True),
            "tied": json.dumps(tied, sort_keys=True),
        }
        _write_safetensors({k: v.contiguous() for k, v in mean.items()}, metadata, out)
        kind = "safetensors"
    else:
        state = dict(mean)
        for other, kept in tied.items():  # the full format's state dict names a tied weight under each name
            state[other] = state[kept]
        payload = {k: v for k, v in newest_payload.items() if k not in ("model", "averages")}
        if _is_sharded(newest_payload):
            payload = {k: v for k, v in payload.items() if k not in ("optimizer", "optimizer_groups")}
        payload.update(model=state, averaged_from=described)
        try:
            ckpt.write_checkpoint_file(out, int(newest_payload["step"]), payload)
        except OSError as err:
            raise ckpt.CheckpointError(f"cannot write {out}: {os.strerror(err.errno) if err.errno else err}") from err
        kind = "full checkpoint"
    return {
        "path": str(out),
        "format": kind,
        "sources": described,
        "tensors": len(mean),
        "parameters": sum(v.numel() for v in mean.values()),
        "bytes": out.stat().st_size,
        "newest": str(newest_path),
    }


def _check_same_model(
    first_path: Path, first: Mapping[str, Any], reference: Mapping[str, torch.Tensor], path: Path,
    payload: Mapping[str, Any], tensors: Mapping[str, torch.Tensor],
) -> None:  # fmt: skip
    """``CheckpointError`` naming both checkpoints and each difference when ``payload`` holds another model."""
    problems = []
    if _model_of(payload) != _model_of(first):
        problems.append(f"model {' '.join(map(str, _model_of(payload)))} vs {' '.join(map(str, _model_of(first)))}")
    for name in sorted(set(reference) | set(tensors)):
        if name not in tensors:
            problems.append(f"{name}: missing")
        elif name not in reference:
            problems.append(f"{name}: not in {first_path}")
        elif tuple(tensors[name].shape) != tuple(reference[name].shape):
            problems.append(f"{name}: shape {list(tensors[name].shape)} vs {list(reference[name].shape)}")
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise ckpt.CheckpointError(
            f"checkpoint {path} holds another model than {first_path}, so they cannot be averaged: {shown}"
        )


# ----------------------------------------------------------------------------- the command


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """``lrkit checkpoint {inspect,export,average}``'s flags."""
    parser.description = (
        "Inspect, export or average checkpoints of lrkit train, in either format: a full checkpoint's file "
        "(checkpoints/step_XXXXXXXX.pt) or a sharded one's directory (checkpoints/step_XXXXXXXX/, read by this "
        "process alone, no torchrun). PATH may also be a run directory: its newest usable checkpoint."
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    inspect = actions.add_parser(
        "inspect",
        help="print the step, clocks, spec, LR now and next, config, layout, size and parameter count",
        description="Print what a checkpoint holds: its step and tokens, the schedule's clocks and spec, each "
        "param group's LR now (the LR of the next update, step + 1, when the run resumes from it) and next "
        "(step + 2), the model and its parameter count, the layout it was saved from, its size on disk and the "
        "run's config. Exit 2 when PATH is no checkpoint.",
    )
    inspect.add_argument("path", metavar="PATH", help="a checkpoint (file or sharded directory) or a run directory")
    inspect.add_argument("--json", action="store_true", help="print the same as one JSON object")
    export = actions.add_parser(
        "export",
        help="write the model's weights to one safetensors file",
        description="Write the model of a checkpoint (either format) to one safetensors file for inference or "
        "another tool. Tied weights are stored once: the metadata's 'tied' maps each left-out name to the "
        "stored one (safetensors.torch.load_model restores the tie). The metadata also holds the lrkit version, "
        "the step, the source checkpoint and the model's name, preset and config. The file is written to a "
        "temporary name and renamed, so it is complete or absent.",
    )
    export.add_argument("path", metavar="PATH", help="a checkpoint (file or sharded directory) or a run directory")
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="the .safetensors file to write")
    export.add_argument("--force", action="store_true", help="replace FILE if it exists (default: refuse)")
    average = actions.add_parser(
        "average",
        help="merge the models of several checkpoints into their (weighted) mean",
        description="Write the mean of the models of several checkpoints of one model (either format): "
        "sum_i w_i * theta_i / sum_i w_i for every tensor, uniform without --weights. OUT ending in .safetensors "
        "is the model as export writes it; any other name is a full checkpoint holding the mean model and the "
        "rest of the newest input (inspect, export and lrkit train --resume read it). Checkpoints of different "
        "models or shapes are refused. OUT is written to a temporary name and renamed: complete or absent.",
    )
    average.add_argument("paths", nargs="+", metavar="PATH", help="checkpoints (files or sharded directories) or run "
                         "directories (their newest usable checkpoint)")  # fmt: skip
    average.add_argument("-o", "--output", required=True, metavar="OUT", help="the .pt or .safetensors file to write")
    average.add_argument("--weights", nargs="+", type=float, metavar="W", default=None,
                         help="one weight >= 0 per PATH (default: all equal)")  # fmt: skip
    average.add_argument("--force", action="store_true", help="replace OUT if it exists (default: refuse)")


def run_checkpoint(args: argparse.Namespace) -> int:
    """Entry point behind ``lrkit checkpoint``: 0, or 2 with ``lrkit checkpoint: error: ...`` for a path that is
    no checkpoint (or an export or average that would overwrite a file, or checkpoints that cannot be averaged)."""
    try:
        if args.action == "inspect":
            info = inspect_checkpoint(args.path)
            print(json.dumps(info) if args.json else format_inspection(info))
            return 0
        if args.action == "average":
            merged = average_checkpoints(args.paths, args.output, weights=args.weights, force=args.force)
            print(f"wrote {merged['path']} ({merged['format']}): the mean of {len(merged['sources'])} checkpoint(s), "
                  f"{merged['tensors']} tensors, {merged['parameters']:,} parameters, {human_bytes(merged['bytes'])}"
                  f"; weights " + ", ".join(f"{s['path']} (step {s['step']}) {s['weight']:g}"
                                            for s in merged["sources"]))  # fmt: skip
            return 0
        result = export_model(args.path, args.output, force=args.force)
    except TrainError as err:  # CheckpointError is one
        print(f"lrkit checkpoint {args.action}: error: {err}", file=sys.stderr)
        return 2
    tied = ", ".join(f"{k} -> {v}" for k, v in result["tied"].items()) or "none"
    print(
        f"wrote {result['path']}: {result['tensors']} tensors, {result['parameters']:,} parameters, "
        f"{human_bytes(result['bytes'])} (step {result['metadata']['step']} of {result['source']}; tied: {tied})"
    )
    return 0
