"""Schedule changes on resume: ``--lr-resume-policy strict|checkpoint|override|extend|cooldown:N[:SHAPE]``.

A checkpoint records the schedule *in force* (``scheduler_spec``), the schedule its run's flags
asked for (``scheduler_request``) and the policy that last changed it (``scheduler_resume_policy``).
A resume whose flags give either of the two specs continues the checkpoint's schedule unchanged.
Otherwise the policy decides:

* ``strict`` (default): an error that lists what changed (``schedulers[1].gamma: 0.5 -> 0.3``).
* ``checkpoint``: keep the checkpoint's schedule; a note lists the ignored changes.
* ``override``: the new schedule from the current step on, as if it had run from step 0; a warning
  gives the LR jump of every param group.
* ``extend``: only the run length may change (``total_steps``, ``T_max``, ``total_iters``,
  ``num_training_steps``). If the new schedule is already continuous at the resume step (warmup, WSD's
  stable phase) it applies as it is; otherwise its rest is refitted to start at the current LR and reach
  its floor at its new end (:class:`lrkit.schedules.Refit`). A schedule on the token (or sample) clock
  is refitted on that clock (lengths in tokens). A transformers schedule (``HFSchedule``: ``hf:cosine``,
  ...) is refitted the same way from its new ``num_training_steps``; one that reads the optimizer's
  default LR (``polynomial``, a ``min_lr``) needs param groups of one peak, which stands for it.
* ``cooldown:N[:SHAPE]``: from the current LR to ``min_lr`` over ``N`` steps, then held
  (:class:`lrkit.schedules.Decay`): WSD from any checkpoint. ``min_lr`` is the new spec's top-level
  ``min_lr`` (``--min-lr``), else 0 (a ``PerGroup`` spec: each group's child's ``min_lr``); ``SHAPE``
  (linear, cosine, 1-sqrt, exponential) defaults to the new spec's ``decay_shape`` (WSD), else linear.
  Rerunning the same command (same flags, same policy) continues the cooldown already in force
  instead of starting another. A schedule on the token (or sample) clock decays on that clock, over
  ``N`` updates at the current batch, ``N * tokens per update`` tokens. Neither policy may change the
  clock (steps, tokens, samples) of the schedule in force.

Every policy but ``override`` keeps the LR continuous at the resume step: the LR of the first update
after the resume is exactly the LR in force at the checkpoint. The schedule put in force is a plain
spec, ``SequentialLR([<schedule in force>, PureSchedule(<Refit|Decay per group>)], milestones=[step])``
(or the new spec itself), saved with the next checkpoint. This module decides; the trainer builds.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lrkit import schedules as S
from lrkit.schedules._checks import check_per_group, check_real
from lrkit.schedules.codec import spec_diff
from lrkit.spec import spec_class, spec_fingerprint
from lrkit.spec.clocked import spec_clock_unit
from lrkit.spec.registry import complete_spec

__all__ = [
    "POLICIES",
    "LENGTH_KEYS",
    "Policy",
    "ResumeError",
    "Saved",
    "Decision",
    "parse_policy",
    "policy_argument",
    "spec_diff",
    "decide",
    "in_force",
    "jump_report",
]

POLICIES = ("strict", "checkpoint", "override", "extend", "cooldown")
#: How this module's messages name the policy (the trainer's flag); TrainingSchedule rewords it for its user.
POLICY_FLAG = "--lr-resume-policy"
#: Spec arguments that mean the length of the run: what ``extend`` may change.
LENGTH_KEYS = ("total_steps", "T_max", "total_iters", "num_training_steps")


class ResumeError(ValueError):
    """A resume that the policy refuses; the message says what changed and what to do."""


@dataclass(frozen=True)
class Policy:
    """A parsed ``--lr-resume-policy``: ``kind``, and for ``cooldown`` its ``steps`` and optional ``shape``."""

    kind: str
    steps: int | None = None
    shape: str | None = None

    def __str__(self) -> str:
        if self.kind != "cooldown":
            return self.kind
        return f"cooldown:{self.steps}" + (f":{self.shape}" if self.shape else "")


def parse_policy(text: str) -> Policy:
    """``strict``, ``checkpoint``, ``override``, ``extend`` or ``cooldown:N[:SHAPE]``."""
    kind, _, rest = str(text).strip().partition(":")
    if kind not in POLICIES:
        raise ValueError(
            f"--lr-resume-policy must be one of strict, checkpoint, override, extend, cooldown:N; got {text!r}"
        )
    if kind != "cooldown":
        if rest:
            raise ValueError(f"--lr-resume-policy {kind} takes no ':' argument, got {text!r}")
        return Policy(kind)
    steps_text, _, shape = rest.partition(":")
    if not steps_text.isdigit() or int(steps_text) < 1:
        raise ValueError(
            f"--lr-resume-policy cooldown needs the number of decay steps N >= 1 (cooldown:N), got {text!r}"
        )
    if shape and shape not in S.DECAY_SHAPES:
        raise ValueError(f"--lr-resume-policy cooldown shape must be one of {', '.join(S.DECAY_SHAPES)}, got {shape!r}")
    return Policy("cooldown", int(steps_text), shape or None)


def policy_argument(text: str) -> Policy:
    """argparse ``type`` of ``--lr-resume-policy``."""
    try:
        return parse_policy(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _last_key(line: str) -> str:
    path = line.split(": ", 1)[0]
    return path.rsplit(".", 1)[-1].split("[", 1)[0]


@dataclass(frozen=True)
class Saved:
    """What a checkpoint says about its schedule."""

    spec: dict[str, Any]  #: the schedule in force
    request: dict[str, Any]  #: the schedule its run's flags asked for
    policy: str | None = None  #: the resume policy that last changed the schedule

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Saved:
        spec = dict(payload["scheduler_spec"])
        return cls(spec, dict(payload.get("scheduler_request") or spec), payload.get("scheduler_resume_policy"))


@dataclass(frozen=True)
class Decision:
    """What to do on resume: restore ``saved.spec``; if ``change``, put a new schedule in force at the step."""

    policy: Policy
    saved: Saved
    new_spec: dict[str, Any]
    change: bool
    notes: list[str] = field(default_factory=list)

    @property
    def request(self) -> dict[str, Any]:
        """The request recorded with the next checkpoint."""
        return self.new_spec if self.change else self.saved.request

    @property
    def record(self) -> str | None:
        """The policy recorded with the next checkpoint."""
        return str(self.policy) if self.change else self.saved.policy


def decide(policy: Policy, saved: Saved, new_spec: dict[str, Any], where: str = "the checkpoint") -> Decision:
    """Check ``new_spec`` against the checkpoint's under ``policy``; raise :class:`ResumeError` if refused."""
    # Compared with their defaults filled in: a spec that spells out a default is the same schedule.
    fingerprint = spec_fingerprint(complete_spec(new_spec))
    same = fingerprint in (spec_fingerprint(complete_spec(saved.spec)), spec_fingerprint(complete_spec(saved.request)))
    diff = spec_diff(complete_spec(saved.request), complete_spec(new_spec))
    listing = "\n".join(f"  {line}" for line in diff)
    if policy.kind == "checkpoint":
        notes = [] if same else [
            f"--lr-resume-policy checkpoint: keeping the schedule of {where}; the command line's schedule "
            f"is ignored. It differs in:\n{listing}"
        ]  # fmt: skip
        return Decision(policy, saved, new_spec, False, notes)
    if policy.kind == "cooldown":
        if same and saved.policy == str(policy):  # the same command again: the cooldown is already in force
            return Decision(policy, saved, new_spec, False)
        _same_clock(policy, saved.spec, new_spec)
        return Decision(policy, saved, new_spec, True)
    if same:
        return Decision(policy, saved, new_spec, False)
    if policy.kind == "strict":
        raise ResumeError(
            f"the schedule differs from the one in {where}:\n{listing}\n"
            "pass --lr-resume-policy checkpoint (keep the checkpoint's schedule), override (apply this one "
            "from the current step, with an LR jump), extend (only the run length changed) or cooldown:N"
        )
    if policy.kind == "extend":
        _same_clock(policy, saved.spec, new_spec)
        others = [line for line in diff if _last_key(line) not in LENGTH_KEYS]
        if others:
            shown = "\n".join(f"  {line}" for line in others)
            raise ResumeError(
                f"--lr-resume-policy extend changes only the run length ({', '.join(LENGTH_KEYS)}), but the "
                f"schedule also differs from the one in {where} in:\n{shown}\n"
                "use --lr-resume-policy override to apply another schedule"
            )
        _pure_class(_on_the_clock(new_spec))
    return Decision(policy, saved, new_spec, True)


def _same_clock(policy: Policy, saved_spec: Mapping[str, Any], new_spec: Mapping[str, Any]) -> None:
    """``extend`` and ``cooldown`` continue on the clock of the schedule in force: refuse a change of clock."""
    before, after = (spec_clock_unit(spec) or "steps" for spec in (saved_spec, new_spec))
    if before != after:
        raise ResumeError(
            f"--lr-resume-policy {policy} continues on the clock of the schedule in force, which counts {before}, "
            f"but the command line's schedule counts {after}: use --lr-resume-policy checkpoint or override"
        )


def _on_the_clock(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """The schedule a ``Clocked`` spec wraps (lengths in its unit), or the spec itself."""
    return spec["schedule"] if spec_clock_unit(spec) is not None else spec


def _pure_class(spec: Mapping[str, Any]) -> Any:
    from lrkit.schedulers.llm import PureSchedule, ScheduleLR

    cls = spec_class(str(spec.get("type")))
    if not isinstance(cls, type) or not issubclass(cls, ScheduleLR) or cls is PureSchedule:
        raise ResumeError(
            f"--lr-resume-policy extend refits lrkit's LLM schedules (WarmupLinear, WarmupCosine, "
            f"WarmupPolynomial, WSD, ...), not {spec.get('type')!r}: use cooldown:N or override"
        )
    return cls


def _then(saved_spec: dict[str, Any], step: int, pieces: list[S.Schedule]) -> dict[str, Any]:
    piece = {"type": "PureSchedule", "schedules": [p.to_dict() for p in pieces]}
    if step < 1:
        return piece
    return {"type": "SequentialLR", "milestones": [step], "schedulers": [saved_spec, piece]}


def cooldown_floors(
    spec: Mapping[str, Any], num_groups: int, group_names: Sequence[str | None] | None = None
) -> list[float]:
    """Each group's ``cooldown`` target: the spec's ``min_lr`` (one, or one per group), else 0; for a
    ``PerGroup`` spec, each group's child's ``min_lr`` (an absolute LR of that group), else 0."""
    if spec.get("type") == "Clocked" and isinstance(spec.get("schedule"), Mapping):
        return cooldown_floors(spec["schedule"], num_groups, group_names)
    if spec.get("type") == "PerGroup":
        from lrkit.spec.groups import per_group_children

        children = per_group_children(spec, group_names, num_groups)
        return [check_real("min_lr", check_per_group("min_lr", child.get("min_lr", 0.0), 1)[0]) for child in children]
    return [check_real("min_lr", f) for f in check_per_group("min_lr", spec.get("min_lr", 0.0), num_groups)]


def in_force(
    decision: Decision,
    step: int,
    current_lrs: list[float],
    peaks: list[float],
    group_names: Sequence[str | None] | None = None,
    clock: Mapping[str, int] | None = None,
    per_step: Mapping[str, int] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The spec to put in force at scheduler step ``step`` (and notes), given each group's current LR and peak
    (and the groups' ``"name"``, which a ``PerGroup`` spec keyed by name needs). A ``cooldown`` of a schedule
    on the token or sample clock also needs ``clock`` (the ticks consumed so far, by unit) and ``per_step``
    (the ticks of one update): its ``N`` steps become ``N * per_step`` ticks."""
    policy, new_spec = decision.policy, decision.new_spec
    if policy.kind == "override":
        return dict(new_spec), []
    if policy.kind == "cooldown":
        return _cooldown(decision, step, current_lrs, peaks, group_names, clock or {}, per_step or {})
    # extend
    from lrkit.schedulers.hf import DefaultLRError

    unit, now = _clock_now(policy, new_spec, step, clock or {}, per_step or {})
    inner = _on_the_clock(new_spec)
    changed = "; ".join(line for line in spec_diff(decision.saved.request, new_spec))
    try:
        schedules = _pure_class(inner).spec_schedules(peaks, **{k: v for k, v in inner.items() if k != "type"})
    except DefaultLRError as err:
        raise ResumeError(
            f"--lr-resume-policy extend ({changed}) cannot refit {inner.get('type')} {inner.get('name')!r}: {err}; "
            "use cooldown:N or override"
        ) from err
    where = f"step {step}" + (f" ({now} {unit})" if unit else "")
    if all(s(now) == lr for s, lr in zip(schedules, current_lrs)):
        return dict(new_spec), [f"--lr-resume-policy extend ({changed}): the new schedule is continuous at {where}"]
    try:
        pieces: list[S.Schedule] = [S.Refit(s, now, lr) for s, lr in zip(schedules, current_lrs)]
    except ValueError as err:
        raise ResumeError(
            f"--lr-resume-policy extend ({changed}): the new schedule must still be decaying at the resume "
            f"{where}: {err}"
        ) from err
    end = schedules[0].end()
    note = (
        f"--lr-resume-policy extend ({changed}): the rest of the decay is refitted from the LR in force "
        f"{_lrs(current_lrs)} at {where} to the floor at {unit or 'step'} {int(end[0]) if end else '?'}"
    )
    return _after(decision.saved.spec, step, now, peaks, pieces), [note]


def _clock_now(
    policy: Policy, spec: Mapping[str, Any], step: int, clock: Mapping[str, int], per_step: Mapping[str, int]
) -> tuple[str | None, int]:
    """The unit ``spec`` counts (``None``: steps) and where its clock stands at scheduler step ``step``."""
    unit = spec_clock_unit(spec)
    if unit is None:
        return None, step
    if unit not in clock or not per_step.get(unit):
        raise ResumeError(f"--lr-resume-policy {policy}: the schedule counts {unit}, and the trainer gave no clock")
    return unit, int(clock[unit])


def _after(
    saved_spec: dict[str, Any], step: int, now: int, peaks: list[float], pieces: list[S.Schedule]
) -> dict[str, Any]:
    """The saved schedule up to ``now``, then ``pieces`` (one per group, counted from ``now``): in steps,
    ``SequentialLR([saved, PureSchedule(pieces)], milestones=[step])``; on the token or sample clock, one
    ``Clocked`` pure schedule per group, ``Sequence([saved_g, piece_g], boundaries=[now])``."""
    unit = spec_clock_unit(saved_spec)
    if unit is None:
        return _then(saved_spec, step, pieces)
    from lrkit.spec.clocked import clock_schedules_for

    before = clock_schedules_for(peaks, unit, saved_spec["schedule"])
    joined = [S.Sequence((old, piece), (now,)) if now >= 1 else piece for old, piece in zip(before, pieces)]
    return {
        "type": "Clocked",
        "unit": unit,
        "schedule": {"type": "PureSchedule", "schedules": [s.to_dict() for s in joined]},
    }


def _cooldown(
    decision: Decision,
    step: int,
    current_lrs: list[float],
    peaks: list[float],
    group_names: Sequence[str | None] | None,
    clock: Mapping[str, int],
    per_step: Mapping[str, int],
) -> tuple[dict[str, Any], list[str]]:
    """``cooldown:N``: a :class:`lrkit.schedules.Decay` per group from the LR in force, after the saved schedule."""
    policy, new_spec = decision.policy, decision.new_spec
    unit, now = _clock_now(policy, new_spec, step, clock, per_step)
    if not policy.steps:  # parse_policy never makes one; a Policy built in code may
        raise ResumeError(f"--lr-resume-policy {policy}: cooldown needs its number of decay steps N >= 1 (cooldown:N)")
    steps = int(policy.steps)
    length = steps * int(per_step[unit]) if unit is not None else steps
    shape = policy.shape or str(_on_the_clock(new_spec).get("decay_shape") or "linear")
    try:
        floors = cooldown_floors(new_spec, len(current_lrs), group_names)
        pieces: list[S.Schedule] = [S.Decay(lr, length, floor, shape) for lr, floor in zip(current_lrs, floors)]
    except (TypeError, ValueError) as err:
        raise ResumeError(f"--lr-resume-policy {policy}: {err}") from err
    where = f"at step {step}" + (f" ({now} {unit})" if unit else "")
    until = f"step {step + steps}" + (f" ({now + length} {unit}, at {per_step[unit]} {unit} per step)" if unit else "")
    note = (
        f"--lr-resume-policy {policy}: {shape} decay from the LR in force {_lrs(current_lrs)} {where} "
        f"to min_lr {_lrs(floors)} at {until}, then held"
    )
    return _after(decision.saved.spec, step, now, peaks, pieces), [note]


def _lrs(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]" if len(values) > 1 else f"{values[0]:.6g}"


def jump_report(step: int, before: list[float], after: list[float]) -> str:
    """The warning of ``override``: each group's LR before and after the change, and the relative change."""
    if before == after:
        return f"--lr-resume-policy override: the new schedule gives the same LR at step {step} (no jump)"
    parts = []
    for i, (a, b) in enumerate(zip(before, after)):
        change = f"{(b - a) / a:+.1%}" if a else ("+0.0%" if b == a else "from 0")
        parts.append(f"group {i}: {a:.6g} -> {b:.6g} ({change})")
    return f"--lr-resume-policy override: the LR jumps at step {step}: " + "; ".join(parts)
