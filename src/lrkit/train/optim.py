"""The trainer's param groups and the schedules beside the LR (the flags below; :mod:`lrkit.train.loop` wires them).

Param groups (``--param-groups``):

* ``decay`` (the default): nanoGPT's two unnamed groups, matrices with ``--weight-decay``, biases and
  norm gains without.
* ``parts``: named groups ``embed``, ``body``, ``head`` (final norm and head), each with a ``_no_decay``
  twin for its 1-D parameters (:func:`lrkit.spec.groups.part_groups`).
* ``layers``: ``embed``, ``block0`` .. ``block{L-1}``, ``head`` (and twins), with layer-wise LR decay
  ``lr * D ** (L + 1 - depth)`` for ``--layer-decay D`` (:func:`lrkit.spec.groups.layerwise_lr_decay`);
  ``--layer-decay`` alone selects it.

``--group-lr NAME=SCALE`` multiplies the peak LR of a named group (``body`` selects ``body`` and
``body_no_decay``). A group's peak is thus ``--lr * lr_factor``. The floors scale with it: the
``--lr-scheduler`` schedule's absolute LRs (``--min-lr``, ``--warmup-start-lr``) are given for a group at
``--lr`` and become ``min_lr * lr_factor`` per group (:func:`lrkit.spec.groups.scale_absolute_lrs`), so every
group keeps the schedule's shape relative to its own peak.

``--group-schedule NAME=SPEC`` gives a named group (or part) a schedule of its own; the others follow
``--lr-scheduler``. The schedule in force is then a :class:`lrkit.spec.groups.PerGroup` spec with one child
per group (a group's own spec as written: its absolute LRs are that group's), which is what
checkpoints record, so resume and ``--lr-resume-policy`` see the whole per-group schedule.

Hyperparameter schedules (``--wd-schedule``, ``--beta2-schedule``, ``--momentum-schedule``,
``--grad-clip-schedule``) are :class:`lrkit.schedulers.hparams.HyperparamScheduler` objects stepped with the LR
scheduler, once per successful update; their state is saved beside the scheduler's, and on resume a
changed one follows ``--lr-resume-policy`` (strict: error; checkpoint: keep the checkpoint's; override:
the new one from the current step).
"""

from __future__ import annotations

import argparse
from typing import Any

from lrkit.schedulers.hparams import GRAD_CLIP, SHORT_FORMS, HyperparamScheduler, schedule_from_text
from lrkit.schedulers.llm import ScheduleLR
from lrkit.spec import spec_class, spec_types
from lrkit.spec.groups import PerGroup, scale_absolute_lrs
from lrkit.tools.flags import parse_json_spec, read_spec_source
from lrkit.train.config import PARAM_GROUPS, TrainConfig
from lrkit.train.errors import TrainError
from lrkit.train.param_groups import NO_DECAY_SUFFIX, layerwise_lr_decay, part_groups, scale_groups

#: hyperparameter key -> its flag, and the ScheduleConfig field that holds it
HPARAM_FLAGS = {
    "weight_decay": "--wd-schedule",
    "beta2": "--beta2-schedule",
    "momentum": "--momentum-schedule",
    GRAD_CLIP: "--grad-clip-schedule",
}
_HPARAM_FIELDS = {
    "weight_decay": "weight_decay_schedule",
    "beta2": "beta2_schedule",
    "momentum": "momentum_schedule",
    GRAD_CLIP: "grad_clip_schedule",
}


class GroupError(TrainError):
    """Bad param-group or hyperparameter-schedule flags, reported before any training step."""


# --------------------------------------------------------------------------- flags


def _name_scale(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=SCALE such as embed=0.1, got {text!r}") from None


def _name_spec(text: str) -> tuple[str, dict[str, Any]]:
    name, sep, source = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=SPEC such as 'embed={{\"type\": ...}}', got {text!r}")
    return name, parse_json_spec(read_spec_source(source), label=name)


def _schedule_text(text: str) -> str:
    """argparse ``type`` of the hyperparameter flags: checks the syntax; the length is resolved in the trainer."""
    try:
        schedule_from_text(text, total_steps=1, name="the schedule")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return text


def add_group_arguments(parser_or_group: Any) -> None:
    """Add ``--param-groups``, ``--layer-decay``, ``--group-lr``, ``--group-schedule`` and the hyperparameter flags."""
    g = parser_or_group
    g.add_argument(
        "--param-groups",
        choices=PARAM_GROUPS,
        default=None,
        help="decay: nanoGPT's two groups (matrices decay; biases and norms do not; the default); parts: named "
        "groups embed, body, head, each with a <name>_no_decay twin for its biases and norms; layers: embed, "
        "block0..block{L-1}, head (and twins), for --layer-decay",
    )
    g.add_argument(
        "--layer-decay",
        type=float,
        default=None,
        metavar="D",
        help="layer-wise LR decay (BEiT's convention), D in (0, 1]: the group at depth d (0 embeddings, i+1 "
        "block i, L+1 final norm and head) peaks at lr * D**(L+1-d), and its floor is --min-lr scaled alike; "
        "implies --param-groups layers",
    )
    g.add_argument(
        "--group-lr",
        type=_name_scale,
        action="append",
        default=[],
        metavar="NAME=SCALE",
        help="multiply the peak LR of group NAME (and of NAME_no_decay) by SCALE; the floors (--min-lr, "
        "--warmup-start-lr) scale alike; repeatable; needs --param-groups parts or layers",
    )
    g.add_argument(
        "--group-schedule",
        type=_name_spec,
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="give group NAME (and NAME_no_decay) its own schedule: a JSON spec or NAME=@file.json of a pure "
        "schedule (WarmupCosine, WSD, PureSchedule, HFSchedule, ...) peaking at that group's LR, its min_lr "
        "absolute; the other groups follow --lr-scheduler; repeatable; needs --param-groups parts or layers",
    )
    forms = f"a JSON schedule of lrkit.schedules with absolute values, @file.json, or {SHORT_FORMS}"
    length = "(STEPS defaults to --total-steps)"
    g.add_argument(
        "--wd-schedule",
        type=_schedule_text,
        default=None,
        metavar="SCHEDULE",
        help=f"weight decay of the decaying groups at each step: {forms} {length}; replaces --weight-decay there",
    )
    g.add_argument(
        "--beta2-schedule",
        type=_schedule_text,
        default=None,
        metavar="SCHEDULE",
        help=f"Adam's beta2 at each step, in [0, 1), e.g. cosine:0.95:0.99 (adamw/adam): {forms} {length}",
    )
    g.add_argument(
        "--momentum-schedule",
        type=_schedule_text,
        default=None,
        metavar="SCHEDULE",
        help=f"SGD momentum at each step, in [0, 1) (--optimizer sgd): {forms} {length}",
    )
    g.add_argument(
        "--grad-clip-schedule",
        type=_schedule_text,
        default=None,
        metavar="SCHEDULE",
        help=f"the global grad-norm clip threshold at each step, > 0; replaces --grad-clip: {forms} {length}",
    )


# --------------------------------------------------------------------------- param groups


def group_mode(config: TrainConfig) -> str:
    """``--param-groups`` as resolved: ``layers`` when only ``--layer-decay`` is given, else ``decay``."""
    opt = config.optimizer
    mode = opt.param_groups
    if mode is None:
        mode = "layers" if opt.layer_decay is not None else "decay"
    if opt.layer_decay is not None and mode != "layers":
        raise GroupError(f"--layer-decay needs --param-groups layers, got --param-groups {mode}")
    if mode == "decay" and (opt.group_lr or config.schedule.group_schedules):
        flag = "--group-lr" if opt.group_lr else "--group-schedule"
        raise GroupError(f"{flag} needs named groups: pass --param-groups parts or layers (or --layer-decay)")
    return mode


def named_groups(config: TrainConfig, model: Any) -> list[dict[str, Any]] | None:
    """The named param groups the config asks for (``"name"``, ``"lr"``, ``"lr_factor"``), or None for ``decay``."""
    mode = group_mode(config)
    if mode == "decay":
        return None
    if config.parallel.pipeline_parallel > 1:
        raise GroupError(f"--param-groups {mode} is not supported with --pipeline-parallel > 1 (its stages "
                         "hold nanoGPT's two groups)")  # fmt: skip
    opt = config.optimizer
    lr, weight_decay = float(config.schedule.lr), float(opt.weight_decay)
    try:
        if mode == "parts":
            groups = part_groups(model, lr, weight_decay)
        else:
            decay = opt.layer_decay if opt.layer_decay is not None else 1.0
            groups = layerwise_lr_decay(model, lr, decay, weight_decay)
    except (TypeError, ValueError) as err:
        flag = f"--layer-decay {opt.layer_decay}" if opt.layer_decay is not None else f"--param-groups {mode}"
        raise GroupError(f"{flag}: {err}") from err
    try:
        return scale_groups(groups, dict(opt.group_lr))
    except (TypeError, ValueError) as err:
        raise GroupError(f"--group-lr: {err}") from err


def _owner(names: list[str], key: str) -> list[int]:
    """The groups ``key`` selects: the group named ``key`` and its ``_no_decay`` twin."""
    return [i for i, n in enumerate(names) if n in (key, key + NO_DECAY_SUFFIX)]


def group_spec(config: TrainConfig, spec: dict[str, Any], groups: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The schedule in force for ``groups``: ``spec`` with per-group floors, or a PerGroup spec (--group-schedule)."""
    if groups is None:
        return spec
    names = [str(g["name"]) for g in groups]
    factors = [float(g.get("lr_factor", 1.0)) for g in groups]
    own: dict[int, dict[str, Any]] = {}
    exact: set[int] = set()
    for key, child in config.schedule.group_schedules:
        selected = _owner(names, key)
        if not selected:
            raise GroupError(f"--group-schedule {key}=...: no param group is named {key!r}; the groups are {names}")
        for i in selected:
            if names[i] == key or i not in exact:  # the group's own name wins over its part's
                own[i] = child
                if names[i] == key:
                    exact.add(i)
    if not own:
        return scale_absolute_lrs(spec, factors)
    inherit = [names[i] for i in range(len(names)) if i not in own]
    kind = spec.get("type")
    if inherit and (kind not in spec_types() or not issubclass(spec_class(str(kind)), ScheduleLR)):
        raise GroupError(
            f"--group-schedule: the groups {inherit} follow --lr-scheduler, a {kind}, which cannot be bound to "
            "one group (its LR is not a function of the step alone): use an LLM schedule (constant, cosine, "
            "linear, wsd, ...) or give those groups a --group-schedule too"
        )
    children = [own[i] if i in own else scale_absolute_lrs(spec, [factors[i]], alone=True) for i in range(len(names))]
    return {"type": PerGroup.__name__, "names": names, "schedulers": children}


def group_names(optimizer: Any) -> list[str] | None:
    """The groups' names, when every group has one."""
    names = [g.get("name") for g in optimizer.param_groups]
    return [str(n) for n in names] if all(isinstance(n, str) for n in names) else None


def decaying(optimizer: Any) -> list[bool]:
    """Which groups take weight decay: named groups but the ``_no_decay`` twins; nanoGPT's unnamed pair: the first."""
    names = group_names(optimizer)
    if names is not None:
        return [not n.endswith(NO_DECAY_SUFFIX) for n in names]
    return [i == 0 for i in range(len(optimizer.param_groups))]


# --------------------------------------------------------------------------- hyperparameter schedules


def build_hparam_schedulers(config: TrainConfig, optimizer: Any) -> list[HyperparamScheduler]:
    """One :class:`HyperparamScheduler` per hyperparameter schedule given (values written for step 0); their
    length is ``total_steps``, else the run's (a resolved config)."""
    total = config.schedule.total_steps
    length = total if total is not None else config.batch.num_iterations
    name = config.optimizer.name
    out: list[HyperparamScheduler] = []
    for key, flag in HPARAM_FLAGS.items():
        text = getattr(config.schedule, _HPARAM_FIELDS[key])
        if text is None:
            continue
        if key == "beta2" and name not in ("adamw", "adam"):
            raise GroupError(f"{flag} needs --optimizer adamw or adam (betas), got --optimizer {name}")
        if key == "momentum" and name != "sgd":
            raise GroupError(f"{flag} needs --optimizer sgd, got --optimizer {name}")
        try:
            schedule = schedule_from_text(text, total_steps=length, name=flag)
            if key == GRAD_CLIP:
                out.append(HyperparamScheduler(None, key, schedule))
            elif key == "weight_decay":
                out.append(HyperparamScheduler(optimizer, key, [schedule if d else None for d in decaying(optimizer)]))
            else:
                out.append(HyperparamScheduler(optimizer, key, schedule))
        except (TypeError, ValueError) as err:
            message = str(err)
            raise GroupError(message if message.startswith(flag) else f"{flag} {text}: {message}") from err
    return out


def grad_clip(hparams: list[HyperparamScheduler], default: float) -> float:
    """The clip threshold for this update: the ``--grad-clip-schedule`` value, else ``--grad-clip``."""
    for h in hparams:
        if h.key == GRAD_CLIP:
            value = h.get_last_value()[0]
            assert value is not None
            return value
    return default


def hparam_record(hparams: list[HyperparamScheduler]) -> dict[str, Any]:
    """The scheduled values in force (read back from the optimizer): ``{"weight_decay": [...], "grad_clip": x}``."""
    return {h.key: (h.current()[0] if h.key == GRAD_CLIP else h.current()) for h in hparams}
