"""Weight averaging beside the raw weights: ``--ema DECAY`` and ``--average-last N``.

Two averages of the model's parameters (the names of ``named_parameters()``, a tied weight once; buffers are
not averaged: the models have none that training changes), kept on the parameters' device and dtype:

* **EMA** (``--ema DECAY``, ``0 < DECAY < 1``): ``ema_0 = theta_0``, the weights at the start of the run (its
  initialisation), and after every optimizer update that was not skipped (an fp16 overflow skips one)::

      ema_k = DECAY * ema_{k-1} + (1 - DECAY) * theta_k

  with no bias correction: torch's ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(DECAY))`` with one
  ``update_parameters`` call at the start and one after each update, whose update function this module calls
  (``torch._foreach_lerp_(ema, theta, 1 - DECAY)``). The weight of ``theta_0`` after ``k`` updates is
  ``DECAY**k``; the EMA's horizon is about ``1 / (1 - DECAY)`` updates.
* **Average of the last N steps** (``--average-last N``, ``N >= 1``): the uniform mean of the weights after
  each of the steps ``s0 .. T`` of a run of ``T`` steps (``--num-iterations``), ``s0 = max(1, T - N + 1)``::

      avg = (theta_{s0} + ... + theta_T) / (T - s0 + 1)

  kept as a running mean (torch's SWA update, ``get_swa_multi_avg_fn``: ``avg += (theta - avg) / (n + 1)``,
  the same as the sum over the steps divided by their count, up to rounding), so it costs one copy of the
  model, not ``N``. Steps count optimizer steps, a skipped one included (its weights are the step before's).
  Before ``s0`` there is no average yet; an evaluation inside the window averages the steps done so far.

Both are one stateful part of a checkpoint (``"averages"``, :class:`Averages`: ``state_dict()`` /
``load_state_dict()``), so a resumed run continues them exactly. The sharded format writes their tensors
beside the model's (``ema/<name>``, ``avg/<name>``). At each evaluation the trainer evaluates the averages with
the same function as the raw weights (:meth:`Averages.evaluate`: the averaged weights are copied into the
model for the evaluation, and the raw ones back, bit for bit), adding ``val_loss_ema`` / ``val_loss_ema_se``
and ``val_loss_avg`` / ``val_loss_avg_se`` to the record.

Layouts: one process, DDP and ZeRO-1 (every rank holds the whole, replicated parameters and updates its own
copy of the averages identically), FSDP2 and tensor parallel (the averages are DTensors laid out as their
parameters: each rank averages its shards; a full checkpoint gathers them). Pipeline stages are refused at
startup (:func:`check_layout`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn, get_swa_multi_avg_fn

from lrkit.train import checkpoint as ckpt
from lrkit.train.config import TrainConfig
from lrkit.train.errors import TrainError
from lrkit.train.parallel import ParallelModel, full_tensor, is_dtensor, shard_like

__all__ = ["EMA_PREFIX", "AVG_PREFIX", "Averages", "build_averages", "check_layout", "window_start"]

#: A sharded checkpoint's keys of the averages: ``ema/<parameter name>`` and ``avg/<parameter name>``.
EMA_PREFIX, AVG_PREFIX = "ema/", "avg/"


def window_start(num_iterations: int, last: int) -> int:
    """The first step ``s0 = max(1, T - N + 1)`` that ``--average-last N`` averages in a run of ``T`` steps."""
    return max(1, num_iterations - last + 1)


def check_layout(config: TrainConfig) -> None:
    """Refuse pipeline stages (``TrainError`` naming the flag, its value and the layout): each stage holds a part
    of the model, which a full checkpoint's averages would have to gather from the other stages."""
    averaging = config.averaging
    flags = [f"--ema {averaging.ema}" if averaging.ema is not None else "",
             f"--average-last {averaging.average_last}" if averaging.average_last is not None else ""]  # fmt: skip
    flag = " ".join(f for f in flags if f)
    if not flag:
        return
    pipeline = config.parallel.pipeline_parallel
    if pipeline > 1:
        raise TrainError(
            f"{flag} is not supported with --pipeline-parallel {pipeline} (each stage holds a part of the model): "
            "expected one process, data parallel (DDP, --zero-stage 1), --fsdp or --tensor-parallel"
        )


def build_averages(config: TrainConfig, pm: ParallelModel) -> Averages | None:
    """The run's averages (None without ``--ema`` and ``--average-last``), started from the weights now."""
    averaging, num_iterations = config.averaging, config.batch.num_iterations
    if averaging.ema is None and averaging.average_last is None:
        return None
    check_layout(config)
    assert num_iterations is not None, "a resolved config"
    return Averages(pm, averaging.ema, averaging.average_last, num_iterations)


def _by_kind(
    update: Callable[[list[torch.Tensor], list[torch.Tensor], Any], None],
    averages: list[torch.Tensor],
    params: list[torch.Tensor],
    count: int,
) -> None:
    """``update(averages, params, count)`` (a torch.optim.swa_utils multi-tensor update) once over the plain
    tensors, with the count as a tensor as ``AveragedModel`` passes it (the same rounding), and once over the
    DTensors (a tensor-parallel model mixes them; a foreach op takes one kind), with the count as a number."""
    plain = [i for i, p in enumerate(params) if not is_dtensor(p)]
    dtensors = [i for i, p in enumerate(params) if is_dtensor(p)]
    if plain:
        update(
            [averages[i] for i in plain],
            [params[i] for i in plain],
            torch.tensor(count, device=params[plain[0]].device),
        )
    if dtensors:
        update([averages[i] for i in dtensors], [params[i] for i in dtensors], count)


class Averages:
    """The EMA and the average of the last steps of ``pm``'s parameters (see the module docstring).

    Args:
        pm: the model under its layout; its parameters now are ``theta_0``.
        ema: the EMA's decay in (0, 1), or None for no EMA.
        last: ``N`` of ``--average-last``, or None.
        num_iterations: the run's length ``T`` in steps (the window is ``max(1, T - N + 1) .. T``).
    """

    def __init__(self, pm: ParallelModel, ema: float | None, last: int | None, num_iterations: int) -> None:
        self.pm, self.decay, self.last = pm, ema, last
        self.first = window_start(num_iterations, last) if last is not None else None
        self.names = [name for name, _, _ in pm.checkpoint_parameters()]
        params = self._params()
        self.ema = [p.detach().clone() for p in params] if ema is not None else None
        self.ema_updates = 0  #: updates folded into the EMA since theta_0
        self.avg = [torch.zeros_like(p.detach()) for p in params] if last is not None else None
        self.avg_count = 0  #: steps averaged in ``avg`` so far
        self._ema_fn = get_ema_multi_avg_fn(ema) if ema is not None else None
        self._swa_fn = get_swa_multi_avg_fn()
        self.process_group: Any = None  #: the group a sharded checkpoint's averages are read over

    def _params(self) -> list[torch.Tensor]:
        """The parameters as the layout holds them between steps: FSDP2 leaves the root module's gathered
        after a forward without backward (an evaluation), so it is resharded first (its shards hold the values)."""
        reshard = getattr(self.pm.raw, "reshard", None)
        if reshard is not None:
            reshard()
        return [p.detach() for _, p, _ in self.pm.checkpoint_parameters()]

    # ------------------------------------------------------------------ training

    @torch.no_grad()
    def update(self, step: int, skipped: bool) -> None:
        """Fold in the weights after optimizer step ``step`` (``skipped``: the update did not happen)."""
        params = self._params()
        if self.ema is not None and not skipped:
            assert self._ema_fn is not None
            _by_kind(self._ema_fn, self.ema, params, self.ema_updates)
            self.ema_updates += 1
        if self.avg is not None and self.first is not None and step >= self.first:
            if step == self.first or self.avg_count == 0:
                for a, p in zip(self.avg, params):
                    a.copy_(p)
                self.avg_count = 1
            else:
                _by_kind(self._swa_fn, self.avg, params, self.avg_count)
                self.avg_count += 1

    def available(self) -> dict[str, list[torch.Tensor]]:
        """The averages that hold something: ``{"ema": ..., "avg": ...}`` (``avg`` once a step is averaged)."""
        out: dict[str, list[torch.Tensor]] = {}
        if self.ema is not None:
            out["ema"] = self.ema
        if self.avg is not None and self.avg_count > 0:
            out["avg"] = self.avg
        return out

    @contextmanager
    @torch.no_grad()
    def swapped(self, which: str) -> Iterator[None]:
        """The model holds the average ``which`` (``ema`` or ``avg``) inside; its own weights again after."""
        params = self._params()
        saved = [p.clone() for p in params]
        try:
            for p, a in zip(params, self.available()[which]):
                p.copy_(a)
            yield
        finally:
            for p, s in zip(self._params(), saved):
                p.copy_(s)

    def evaluate(self, evaluate: Callable[[], tuple[float, float]]) -> dict[str, float]:
        """``evaluate()`` (the mean validation loss and its standard error) of each available average, as the
        record's ``val_loss_ema``, ``val_loss_ema_se``, ``val_loss_avg``, ``val_loss_avg_se``."""
        out: dict[str, float] = {}
        for which in self.available():
            with self.swapped(which):
                out[f"val_loss_{which}"], out[f"val_loss_{which}_se"] = evaluate()
        return out

    # ------------------------------------------------------------------ the state protocol

    def _plain(self) -> dict[str, Any]:
        return {"ema_decay": self.decay, "ema_updates": self.ema_updates, "average_last": self.last,
                "avg_first": self.first, "avg_count": self.avg_count}  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """The full checkpoint's state: the counters and the averages as CPU tensors by parameter name."""
        state = self._plain()
        state["ema"] = self._by_name(self.ema)
        state["avg"] = self._by_name(self.avg)
        return state

    def _by_name(self, tensors: list[torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        """Collective under FSDP2 / TP: a DTensor's shards are gathered into the whole tensor on every rank."""
        if tensors is None:
            return None
        return {name: full_tensor(t.detach()).cpu().clone() for name, t in zip(self.names, tensors)}

    def sharded_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The sharded checkpoint's state: the counters (plain data, in ``trainer.pt``) and this rank's tensors
        (``ema/<name>``, ``avg/<name>``: DCP writes one copy of the replicated tensors)."""
        tensors: dict[str, torch.Tensor] = {}
        for prefix, values in ((EMA_PREFIX, self.ema), (AVG_PREFIX, self.avg)):
            for name, t in zip(self.names, values or []):
                tensors[prefix + name] = t
        return self._plain(), tensors

    def load_state_dict(self, state: Mapping[str, Any] | None, sharded: ckpt.ShardedState | None = None) -> list[str]:
        """Continue the averages of ``state`` (``state_dict()``'s, or ``sharded_state()``'s counters with the
        checkpoint ``sharded`` holding the tensors); returns notes for what does not continue:

        * no saved averages (the checkpoint was saved without ``--ema`` / ``--average-last``): they start from
          the weights resumed;
        * another ``--ema`` decay: the saved EMA continues with the new decay;
        * another window (``--average-last`` or ``--num-iterations`` changed): the saved average is dropped and
          the new window starts at its first step (or now, when that is past).

        Raises ``CheckpointError`` when a saved average lacks a parameter or holds another shape.
        """
        notes: list[str] = []
        saved = dict(state or {})
        if self.ema is not None:
            if saved.get("ema_decay") is None:
                notes.append(f"--ema {self.decay}: the checkpoint holds no EMA; it starts from the weights resumed")
                with torch.no_grad():
                    for e, p in zip(self.ema, self._params()):
                        e.copy_(p)
            else:
                if saved["ema_decay"] != self.decay:
                    notes.append(f"--ema {self.decay}: the checkpoint's EMA (decay {saved['ema_decay']}) "
                                 f"continues with decay {self.decay}")  # fmt: skip
                self._load(self.ema, saved.get("ema"), EMA_PREFIX, sharded)
                self.ema_updates = int(saved.get("ema_updates", 0))
        if self.avg is not None:
            same = saved.get("average_last") is not None and saved.get("avg_first") == self.first
            if same:
                self.avg_count = int(saved.get("avg_count", 0))
                if self.avg_count:
                    self._load(self.avg, saved.get("avg"), AVG_PREFIX, sharded)
            elif saved.get("avg_count"):
                notes.append(
                    f"--average-last {self.last}: the checkpoint averaged from step {saved.get('avg_first')} and "
                    f"this run's window starts at step {self.first}: the saved average is dropped"
                )
        return notes

    def _load(
        self,
        into: list[torch.Tensor],
        full: Mapping[str, torch.Tensor] | None,
        prefix: str,
        sharded: ckpt.ShardedState | None,
    ) -> None:
        where = f"checkpoint {sharded.path}" if sharded is not None else "the checkpoint"
        if sharded is not None:
            shapes = sharded.shapes(prefix)
        elif full is not None:
            shapes = {k: tuple(v.shape) for k, v in full.items()}
        else:
            raise ckpt.CheckpointError(f"{where} holds no {prefix.rstrip('/')} tensors")
        problems = []
        for name, t in zip(self.names, into):
            if name not in shapes:
                problems.append(f"{prefix}{name}: missing")
            elif shapes[name] != tuple(t.shape):
                problems.append(f"{prefix}{name}: checkpoint {list(shapes[name])}, model {list(t.shape)}")
        if problems:
            raise ckpt.CheckpointError(f"{where}: its averages do not fit this model: " + "; ".join(problems))
        if sharded is not None:
            sharded.load({prefix + name: t for name, t in zip(self.names, into)}, self.process_group)
        else:
            assert full is not None
            with torch.no_grad():
                for name, t in zip(self.names, into):
                    t.copy_(shard_like(full[name].to(t.dtype), t))  # this rank's shard of a DTensor
