"""The one argparse definition of the learning-rate schedule flags (``lrkit preview|plot`` and the trainer).

``add_schedule_arguments(parser)`` adds the flags; ``spec_from_args(args)`` turns the
parsed flags into a JSON spec that :func:`lrkit.build_scheduler` builds (with either
backend). The optimizer's ``lr`` is ``args.lr``: it is the peak of every schedule.

``--lr-scheduler`` takes a short name, a JSON spec (``'{"type": "WarmupCosine", ...}'``)
or ``@file.json``. Short names and the spec they give (``W`` = ``--warmup-steps``,
``T`` = ``--total-steps``):

================  ==========================================================================
name              spec
================  ==========================================================================
constant          WarmupConstant(W)
linear / cosine   WarmupLinear / WarmupCosine(W, T, --min-lr, --warmup-start-lr)
polynomial        WarmupPolynomial(W, T, --power, --min-lr)
wsd               WSD(W, T, --decay-steps | --decay-fraction, --decay-shape, --min-lr)
inverse-sqrt      InverseSqrt(W, --timescale)
cosine-restarts   CosineWithRestarts(--cycle-steps, --cycle-mult, --cycle-decay, --cycle-warmup-steps,
                  --num-cycles (or derived from T), --min-lr, W)
step (steplr)     StepLR(--step-size, --gamma)          } with W > 0: SequentialLR([WarmupConstant(W),
multistep         MultiStepLR(--milestones, --gamma)    } main], milestones=[W]); the main schedule
exponential       ExponentialLR(--gamma)                } starts at step W, --milestones stay absolute
onecycle          OneCycleLR(max_lr=--lr, total_steps=T + 1, pct_start=(P + 1)/(T + 1), div_factor=lr/
                  --warmup-start-lr, final_div_factor from --min-lr), P = W or round(--pct-start * T): torch
                  peaks at pct_start * total_steps - 1 and floors at total_steps - 1, so this puts the peak
                  at step P and the floor at step T like every other schedule
cyclic            CyclicLR(base_lr=--min-lr, max_lr=--lr, step_size_up=--step-size, --cyclic-mode, --gamma)
HF names          HFSchedule(name, W, T, scheduler_specific_kwargs from the flags); ``reduce_lr_on_plateau``
                  gives ReduceLROnPlateau(factor=--gamma, --patience, --min-lr). linear, cosine,
                  polynomial and constant mean lrkit's schedules: write ``hf:cosine`` for transformers'.
================  ==========================================================================

The warmup of the torch-class names is lrkit's ``WarmupConstant`` (from ``--warmup-start-lr``,
default 0, to the peak at step W) because torch's ``LinearLR`` cannot start at 0; with
``backend="torch"`` it is PyTorch's ``LambdaLR``, so the whole spec still builds with torch.

Every flag but ``--lr`` (1e-3) and ``--lr-scheduler`` (constant) defaults to None ("not
given"): a flag the chosen schedule does not use is an error that says which schedules take it.
``--total-steps`` is always accepted: it is also the length of the run (preview horizon).

Time in tokens: ``--warmup``, ``--total`` and ``--decay`` take a quantity instead of a step count
(``2000``, ``50Mtok``, ``10Btok``, ``1.5Msamples``, ``0.01dur``; syntax and the mixed-unit rule in
:mod:`lrkit.schedules.clock`). With a length in tokens (or samples) the LLM schedules (constant, linear, cosine,
polynomial, wsd, inverse-sqrt, cosine-restarts) run on the token (sample) clock: the spec is
``{"type": "Clocked", "unit": "tokens", "schedule": <the spec above, lengths in tokens>}``
(:mod:`lrkit.spec.clocked`). Step counts beside it (``--warmup-steps``, ``--timescale``, ...) are converted
with the :class:`lrkit.schedules.clock.Rates` given to :func:`spec_from_args`; ``dur`` is a fraction of
``--total``, or of ``--total-steps``. ``--decay F dur`` is ``decay_fraction=F``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lrkit import schedules as S
from lrkit.schedules.clock import Quantity, QuantityError, RateError, Rates, clock_unit, parse_quantity

__all__ = [
    "SHORT_NAMES",
    "ALIASES",
    "ScheduleFlagError",
    "add_schedule_arguments",
    "add_clock_arguments",
    "total_length",
    "scheduler_names",
    "spec_from_args",
]

SHORT_NAMES: tuple[str, ...] = (
    "constant",
    "step",
    "multistep",
    "linear",
    "exponential",
    "cosine",
    "cosine-restarts",
    "polynomial",
    "inverse-sqrt",
    "wsd",
    "onecycle",
    "cyclic",
)
ALIASES: dict[str, str] = {"steplr": "step"}
_HF = {f"hf:{name}" for name in S.HF_SCHEDULER_NAMES}
#: bare HF names that do not clash with a short name
_HF_BARE = {name: f"hf:{name}" for name in S.HF_SCHEDULER_NAMES if name not in SHORT_NAMES}

# Flags every schedule accepts: the optimizer's LR and the run length.
_ALWAYS = {"lr", "total_steps", "total"}
#: quantity flag -> the step-count flag it stands for (a schedule accepts both or neither)
_QUANTITY_FLAGS = {"warmup": "warmup_steps", "total": "total_steps", "decay": "decay_steps"}
#: flags that count optimizer steps: converted to the clock of a schedule in tokens or samples
_STEP_COUNTS = ("warmup_steps", "total_steps", "decay_steps", "timescale", "cycle_steps", "cycle_warmup_steps")
#: short names whose schedule may run on the token or sample clock (lrkit's LLM schedules)
_CLOCKABLE = ("constant", "linear", "cosine", "polynomial", "wsd", "inverse-sqrt", "cosine-restarts")
_WARMUP = {"warmup_steps", "warmup_start_lr"}
#: canonical scheduler name -> the flags (dests) it uses besides _ALWAYS
_ACCEPTS: dict[str, set[str]] = {
    "constant": _WARMUP,
    "step": _WARMUP | {"step_size", "gamma"},
    "multistep": _WARMUP | {"milestones", "gamma"},
    "exponential": _WARMUP | {"gamma"},
    "linear": _WARMUP | {"min_lr"},
    "cosine": _WARMUP | {"min_lr"},
    "polynomial": _WARMUP | {"min_lr", "power"},
    "wsd": _WARMUP | {"min_lr", "decay_steps", "decay_fraction", "decay_shape"},
    "inverse-sqrt": _WARMUP | {"timescale"},
    "cosine-restarts": _WARMUP
    | {"min_lr", "cycle_steps", "cycle_mult", "cycle_decay", "cycle_warmup_steps", "num_cycles"},
    "onecycle": _WARMUP | {"min_lr", "pct_start", "anneal_strategy"},
    "cyclic": {"min_lr", "step_size", "gamma", "cyclic_mode"},
    "hf:linear": {"warmup_steps"},
    "hf:cosine": {"warmup_steps", "num_cycles"},
    "hf:cosine_with_restarts": {"warmup_steps", "num_cycles"},
    "hf:polynomial": {"warmup_steps", "min_lr", "power"},
    "hf:constant": set(),
    "hf:constant_with_warmup": {"warmup_steps"},
    "hf:inverse_sqrt": {"warmup_steps", "timescale"},
    "hf:reduce_lr_on_plateau": {"gamma", "min_lr", "patience"},
    "hf:cosine_with_min_lr": {"warmup_steps", "min_lr", "num_cycles"},
    "hf:cosine_warmup_with_min_lr": {"warmup_steps", "min_lr", "num_cycles", "warmup_start_lr"},
    "hf:warmup_stable_decay": {
        "warmup_steps",
        "min_lr",
        "decay_steps",
        "decay_fraction",
        "decay_shape",
        "warmup_shape",
        "num_cycles",
    },
}
_NEEDS_TOTAL = {
    "linear",
    "cosine",
    "polynomial",
    "wsd",
    "onecycle",
    "hf:linear",
    "hf:cosine",
    "hf:cosine_with_restarts",
    "hf:polynomial",
    "hf:cosine_with_min_lr",
    "hf:cosine_warmup_with_min_lr",
}


class ScheduleFlagError(ValueError):
    """Schedule flags that do not fit together; the message names the flags and the valid choices."""


def scheduler_names() -> list[str]:
    """Every name ``--lr-scheduler`` accepts (besides a JSON spec and ``@file.json``)."""
    return [*SHORT_NAMES, *ALIASES, *_HF_BARE, *sorted(_HF)]


def _canonical(name: str) -> str | None:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in SHORT_NAMES or key in _HF:
        return key
    return _HF_BARE.get(key)


def read_spec_source(text: str) -> str:
    """The text of a spec flag: ``@file.json`` is replaced by the file's contents (argparse errors)."""
    source = text.strip()
    if source.startswith("@"):
        path = Path(source[1:])
        try:
            return path.read_text().strip()
        except OSError as err:
            raise argparse.ArgumentTypeError(f"cannot read spec file {str(path)!r}: {err.strerror}") from err
    return source


def parse_json_spec(source: str, label: str = "") -> dict[str, Any]:
    """A JSON spec object with a ``"type"`` key; ``label`` prefixes the argparse error."""
    prefix = f"{label}: " if label else ""
    try:
        spec = json.loads(source)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"{prefix}invalid JSON spec {source!r}: {err}") from err
    if not isinstance(spec, dict) or "type" not in spec:
        raise argparse.ArgumentTypeError(f"{prefix}a JSON spec must be an object with a 'type' key, got {spec!r}")
    return spec


def _scheduler_value(text: str) -> str | dict[str, Any]:
    """argparse ``type`` of ``--lr-scheduler``: a canonical name or a spec dict."""
    source = read_spec_source(text)
    if source.startswith("{"):
        return parse_json_spec(source)
    name = _canonical(source)
    if name is None:
        raise argparse.ArgumentTypeError(
            f"unknown scheduler {text!r}; choose one of: {', '.join(scheduler_names())}, "
            "a JSON spec ('{\"type\": ...}') or @file.json"
        )
    return name


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(",", " ").split()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints such as 30,60,90, got {text!r}") from err


def _quantity_text(text: str) -> str:
    """argparse ``type`` of ``--warmup``/``--total``/``--decay``: the quantity, checked, as typed."""
    try:
        parse_quantity(text, "")
    except QuantityError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return text.strip()


#: (flag names, argparse keyword arguments) of every schedule flag; each defaults to None ("not given").
_FLAG_TABLE: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--lr-scheduler",),
        {
            "type": _scheduler_value,
            "default": "constant",
            "metavar": "NAME|JSON|@FILE",
            "help": f"schedule: one of {', '.join(scheduler_names())}; or a JSON spec, or @file.json "
            "(default: constant)",
        },
    ),
    (("--lr", "--learning-rate"), {"type": float, "default": 1e-3, "help": "peak learning rate (default: 1e-3)"}),
    (("--warmup-steps",), {"type": int, "metavar": "W", "help": "linear warmup steps; the peak is reached at step W"}),
    (
        ("--warmup",),
        {
            "type": _quantity_text,
            "metavar": "Q",
            "help": "warmup length as a quantity instead of --warmup-steps: 2000 (steps), 50Mtok, 2Ksamples, "
            "0.01dur (fraction of --total); multipliers K M B T",
        },
    ),
    (
        ("--total-steps",),
        {"type": int, "metavar": "T", "help": "optimizer steps of the run; decays reach --min-lr at T"},
    ),
    (
        ("--total",),
        {
            "type": _quantity_text,
            "metavar": "Q",
            "help": "run length as a quantity instead of --total-steps: 20000 (steps), 10Btok, 5Msamples; "
            "decays reach --min-lr there. In tokens or samples the schedule runs on that clock, and the "
            "trainer without --num-iterations runs ceil(total / per step) steps",
        },
    ),
    (("--min-lr",), {"type": float, "help": "absolute floor reached at T (cyclic: base_lr; HF: converted)"}),
    (("--warmup-start-lr",), {"type": float, "help": "absolute LR at step 0 (default: 0)"}),
    (("--step-size",), {"type": int, "help": "step: decay period; cyclic: steps up (default 2000)"}),
    (("--gamma",), {"type": float, "help": "step/multistep: decay factor (default 0.1); exponential: per step"}),
    (("--milestones",), {"type": _int_list, "help": "multistep: absolute steps where the LR is multiplied by gamma"}),
    (("--decay-steps",), {"type": int, "help": "wsd: length of the final decay"}),
    (
        ("--decay",),
        {
            "type": _quantity_text,
            "metavar": "Q",
            "help": "wsd: decay length as a quantity instead of --decay-steps: 500 (steps), 1Btok, 0.2dur",
        },
    ),
    (("--decay-fraction",), {"type": float, "help": "wsd: decay length as a fraction of T"}),
    (("--decay-shape",), {"choices": S.DECAY_SHAPES, "help": "wsd: decay shape (default linear)"}),
    (("--warmup-shape",), {"choices": ("linear", "cosine", "1-sqrt"), "help": "warmup_stable_decay: warmup_type"}),
    (("--power",), {"type": float, "help": "polynomial: exponent (default 1)"}),
    (("--timescale",), {"type": int, "help": "inverse-sqrt: decay timescale in steps (default W)"}),
    (("--cycle-steps",), {"type": int, "help": "cosine-restarts: length of the first cycle"}),
    (("--cycle-mult",), {"type": int, "help": "cosine-restarts: each cycle is this many times longer (default 1)"}),
    (("--cycle-decay",), {"type": float, "help": "cosine-restarts: each cycle's peak is this times the last's"}),
    (("--cycle-warmup-steps",), {"type": int, "help": "cosine-restarts: re-warmup steps at each restart"}),
    (("--num-cycles",), {"type": float, "help": "cosine-restarts: number of cycles; HF cosine*: num_cycles"}),
    (("--pct-start",), {"type": float, "help": "onecycle: the peak is at step round(pct_start * T) (default 0.3)"}),
    (("--anneal-strategy",), {"choices": ("cos", "linear"), "help": "onecycle: annealing (default cos)"}),
    (("--cyclic-mode",), {"choices": ("triangular", "triangular2", "exp_range"), "help": "cyclic: mode"}),
    (("--patience",), {"type": int, "help": "reduce_lr_on_plateau: steps without improvement (default 10)"}),
)
#: dest -> the flag as typed (for messages)
_FLAG_OF: dict[str, str] = {names[0][2:].replace("-", "_"): names[0] for names, _ in _FLAG_TABLE}


def add_schedule_arguments(parser_or_group: Any) -> None:
    """Add the schedule flags to an ``argparse.ArgumentParser`` or argument group (the trainer's and the CLI's)."""
    for names, kwargs in _FLAG_TABLE:
        parser_or_group.add_argument(*names, **{"default": None, **kwargs})


class _Flags:
    """Reads the parsed flags of one scheduler and reports misuse."""

    def __init__(self, args: argparse.Namespace, name: str, parser: argparse.ArgumentParser | None) -> None:
        self.args, self.name, self.parser = args, name, parser

    def fail(self, message: str) -> Any:
        if self.parser is not None:
            self.parser.error(message)
        raise ScheduleFlagError(message)

    def get(self, dest: str, default: Any = None) -> Any:
        value = getattr(self.args, dest, None)
        return default if value is None else value

    def given(self, dest: str) -> bool:
        return getattr(self.args, dest, None) is not None

    def need(self, dest: str) -> Any:
        if not self.given(dest):
            quantity = [_FLAG_OF[q] for q, count in _QUANTITY_FLAGS.items() if count == dest]
            alternative = f" (or {quantity[0]})" if quantity else ""
            self.fail(f"--lr-scheduler {self.name} needs {_FLAG_OF.get(dest, dest)}{alternative}")
        return getattr(self.args, dest)

    def whole(self, dest: str) -> int | None:
        value = self.get(dest)
        if value is None:
            return None
        if float(value) != int(value):
            self.fail(f"{_FLAG_OF.get(dest, dest)} must be a whole number for {self.name}, got {value!r}")
        return int(value)


def spec_from_args(
    args: argparse.Namespace, parser: argparse.ArgumentParser | None = None, rates: Rates | None = None
) -> dict[str, Any]:
    """The JSON spec the schedule flags describe (buildable by :func:`lrkit.build_scheduler`).

    Args:
        args: parsed flags (from :func:`add_schedule_arguments`).
        parser: when given, misuse is reported with ``parser.error`` (usage + exit 2).
        rates: tokens per optimizer step and per sample, to convert lengths given in different units
            (``--warmup-steps 2000 --total 10Btok``); unknown by default.

    Raises:
        ScheduleFlagError: a flag the chosen schedule does not use, a missing required flag,
            two flags that contradict each other, or a quantity that cannot be converted (without ``parser``).
    """
    choice = getattr(args, "lr_scheduler", None) or "constant"
    if isinstance(choice, str):
        try:
            choice = _scheduler_value(choice)
        except argparse.ArgumentTypeError as err:
            _Flags(args, str(choice), parser).fail(f"argument --lr-scheduler: {err}")
    accepted = _ALWAYS if isinstance(choice, dict) else _ALWAYS | _ACCEPTS[str(choice)]
    accepted = accepted | {q for q, count in _QUANTITY_FLAGS.items() if count in accepted}
    label = "a JSON spec" if isinstance(choice, dict) else str(choice)
    what = "a JSON spec (it holds its own arguments)" if isinstance(choice, dict) else f"--lr-scheduler {label}"
    flags = _Flags(args, label, parser)
    for dest, flag in _FLAG_OF.items():
        if dest == "lr_scheduler" or dest in accepted or not flags.given(dest):
            continue
        users = [name for name, dests in _ACCEPTS.items() if _QUANTITY_FLAGS.get(dest, dest) in dests]
        flags.fail(f"{flag} does not apply to {what}; it applies to: {', '.join(users)}")
    if isinstance(choice, dict):
        return dict(choice)
    resolved, unit = _on_clock(flags, rates or Rates())
    if unit != "steps" and choice not in _CLOCKABLE:
        flags.fail(
            f"--lr-scheduler {choice} counts optimizer steps; lengths in {unit} work with "
            f"{', '.join(_CLOCKABLE)} (or a JSON Clocked spec)"
        )
    spec = _spec_of(_Flags(resolved, label, parser), choice)
    return spec if unit == "steps" else {"type": "Clocked", "unit": unit, "schedule": spec}


def _spec_of(flags: _Flags, choice: str) -> dict[str, Any]:
    """The spec of short name ``choice`` from flags whose lengths are all in one clock's ticks."""
    if flags.given("warmup_start_lr") and not flags.get("warmup_steps", 0) and choice != "onecycle":
        flags.fail("--warmup-start-lr needs --warmup-steps > 0")
    if flags.given("decay_steps") and flags.given("decay_fraction"):
        flags.fail("give --decay-steps or --decay-fraction, not both")
    if choice in _NEEDS_TOTAL:
        flags.need("total_steps")
    if choice.startswith("hf:"):
        return _hf_spec(flags, choice[3:])
    return _BUILDERS[choice](flags)


def _on_clock(flags: _Flags, rates: Rates) -> tuple[argparse.Namespace, str]:
    """The flags with every length in ticks of the schedule's clock, and that clock's unit.

    The clock and the conversions follow :mod:`lrkit.schedules.clock`: tokens if any length is in tokens, else
    samples if any is in samples, else steps; ``--decay F dur`` becomes ``decay_fraction=F``.
    """
    for name, count in _QUANTITY_FLAGS.items():
        if flags.given(name) and flags.given(count):
            flags.fail(f"give {_FLAG_OF[name]} or {_FLAG_OF[count]}, not both")
    if flags.given("decay") and flags.given("decay_fraction"):
        flags.fail("give --decay or --decay-fraction, not both")
    lengths: dict[str, tuple[str, Quantity]] = {}  # dest -> (flag as typed, quantity)
    for dest in _STEP_COUNTS:
        if flags.given(dest):
            value = flags.whole(dest)
            lengths[dest] = (_FLAG_OF[dest], Quantity(int(value or 0), "steps", str(value)))
    for name, count in _QUANTITY_FLAGS.items():
        if flags.given(name):
            try:
                lengths[count] = (_FLAG_OF[name], parse_quantity(flags.get(name), _FLAG_OF[name]))
            except QuantityError as err:
                flags.fail(str(err))
    unit = clock_unit(q.unit for _, q in lengths.values())
    resolved = argparse.Namespace(**{**vars(flags.args), **dict.fromkeys(_QUANTITY_FLAGS)})
    try:
        total = None
        if "total_steps" in lengths:
            flag, quantity = lengths["total_steps"]
            if quantity.unit == "dur":
                raise QuantityError(f"{flag} {quantity} is the run's length: give it in steps, tokens or samples")
            total = rates.convert(quantity, unit, name=flag)
        for dest, (flag, quantity) in lengths.items():
            if dest == "decay_steps" and quantity.unit == "dur":
                resolved.decay_fraction, resolved.decay_steps = quantity.amount, None
            else:
                setattr(resolved, dest, rates.convert(quantity, unit, total, name=flag))
    except RateError as err:
        flags.fail(f"{err} (lrkit preview/plot: pass --tokens-per-step, and --sequence-length for samples)")
    except QuantityError as err:
        flags.fail(str(err))
    return resolved, unit


def total_length(args: argparse.Namespace) -> Quantity | None:
    """The run length the flags give (``--total-steps`` or ``--total``) as a quantity, or None.

    Raises:
        QuantityError: ``--total`` does not parse or is a ``dur`` fraction.
    """
    if getattr(args, "total_steps", None) is not None:
        return Quantity(int(args.total_steps), "steps", str(args.total_steps))
    text = getattr(args, "total", None)
    if text is None:
        return None
    quantity = parse_quantity(text, "--total")
    if quantity.unit == "dur":
        raise QuantityError(f"--total {quantity} is the run's length: give it in steps, tokens or samples")
    return quantity


def add_clock_arguments(parser_or_group: Any) -> None:
    """``--tokens-per-step`` and ``--sequence-length``: what ``lrkit preview/plot`` need to show a schedule
    in tokens or samples per optimizer step, or to convert lengths given in different units (the trainer
    knows both from its batch flags)."""
    parser_or_group.add_argument(
        "--tokens-per-step",
        "--total-batch-size",
        dest="tokens_per_step",
        type=int,
        metavar="N",
        help="tokens per optimizer update (the trainer's --total-batch-size): a schedule in tokens is shown "
        "at step s = s * N tokens, and step counts beside token lengths are converted with it",
    )
    parser_or_group.add_argument(
        "--sequence-length",
        type=int,
        metavar="N",
        help="tokens per sample, for lengths in samples (a sample is one sequence)",
    )


def _warmup_args(f: _Flags) -> dict[str, Any]:
    return {"warmup_steps": f.get("warmup_steps", 0), "warmup_start_lr": f.get("warmup_start_lr", 0.0)}


def _decay_spec(kind: str) -> Any:
    def build(f: _Flags) -> dict[str, Any]:
        return {
            "type": kind,
            "warmup_steps": f.get("warmup_steps", 0),
            "total_steps": f.get("total_steps"),
            "min_lr": f.get("min_lr", 0.0),
            "warmup_start_lr": f.get("warmup_start_lr", 0.0),
        }

    return build


def _polynomial(f: _Flags) -> dict[str, Any]:
    return {**_decay_spec("WarmupPolynomial")(f), "power": f.get("power", 1.0)}


def _wsd(f: _Flags) -> dict[str, Any]:
    if not f.given("decay_steps") and not f.given("decay_fraction"):
        f.fail("--lr-scheduler wsd needs --decay-steps or --decay-fraction")
    return {
        "type": "WSD",
        "total_steps": f.get("total_steps"),
        "decay_steps": f.get("decay_steps"),
        "decay_fraction": f.get("decay_fraction"),
        "decay_shape": f.get("decay_shape", "linear"),
        "min_lr": f.get("min_lr", 0.0),
        **_warmup_args(f),
    }


def _inverse_sqrt(f: _Flags) -> dict[str, Any]:
    if not f.get("warmup_steps", 0) and not f.given("timescale"):
        f.fail("--lr-scheduler inverse-sqrt without --warmup-steps needs --timescale")
    return {"type": "InverseSqrt", "timescale": f.get("timescale"), **_warmup_args(f)}


def _cosine_restarts(f: _Flags) -> dict[str, Any]:
    spec = {
        "type": "CosineWithRestarts",
        "cycle_steps": f.need("cycle_steps"),
        "cycle_mult": f.get("cycle_mult", 1),
        "cycle_decay": f.get("cycle_decay", 1.0),
        "min_lr": f.get("min_lr", 0.0),
        "cycle_warmup_steps": f.get("cycle_warmup_steps", 0),
        "num_cycles": f.whole("num_cycles"),
        **_warmup_args(f),
    }
    total = f.get("total_steps")
    if total is None:
        return spec
    try:
        shape = S.CosineWithRestarts(1.0, **{k: v for k, v in spec.items() if k not in ("type", "min_lr")})
    except (TypeError, ValueError) as err:
        return f.fail(str(err))
    ends = [int(shape.cycle_start(k)) for k in range(1, 64) if shape.cycle_start(k - 1) <= total]
    if spec["num_cycles"] is None:
        if total not in ends:
            f.fail(
                f"--total-steps {total} does not end a cycle (cycles end at {', '.join(map(str, ends[:8]))}, ...): "
                "pass --num-cycles or a --total-steps at a cycle end"
            )
        spec["num_cycles"] = ends.index(total) + 1
    elif int(shape.cycle_start(spec["num_cycles"])) > total:
        f.fail(
            f"--num-cycles {spec['num_cycles']} ends at step {int(shape.cycle_start(spec['num_cycles']))}, "
            f"after --total-steps {total}"
        )
    return spec


def _with_warmup(f: _Flags, main: dict[str, Any]) -> dict[str, Any]:
    warmup = f.get("warmup_steps", 0)
    if not warmup:
        return main
    first = {"type": "WarmupConstant", "warmup_steps": warmup, "warmup_start_lr": f.get("warmup_start_lr", 0.0)}
    return {"type": "SequentialLR", "milestones": [warmup], "schedulers": [first, main]}


def _step(f: _Flags) -> dict[str, Any]:
    return _with_warmup(f, {"type": "StepLR", "step_size": f.need("step_size"), "gamma": f.get("gamma", 0.1)})


def _multistep(f: _Flags) -> dict[str, Any]:
    milestones = list(f.need("milestones"))
    warmup = f.get("warmup_steps", 0)
    if warmup and any(m <= warmup for m in milestones):
        f.fail(f"--milestones are absolute steps and must all be > --warmup-steps {warmup}, got {milestones}")
    shifted = [m - warmup for m in milestones]
    return _with_warmup(f, {"type": "MultiStepLR", "milestones": shifted, "gamma": f.get("gamma", 0.1)})


def _exponential(f: _Flags) -> dict[str, Any]:
    return _with_warmup(f, {"type": "ExponentialLR", "gamma": f.need("gamma")})


def _onecycle(f: _Flags) -> dict[str, Any]:
    lr, total = float(f.get("lr")), f.get("total_steps")
    if f.given("warmup_steps") and f.given("pct_start"):
        f.fail("give --warmup-steps or --pct-start for onecycle, not both")
    # lrkit's conventions on torch's class: the peak at step W (torch: pct_start * total_steps - 1),
    # the floor at step T (torch: total_steps - 1).
    peak_step = f.get("warmup_steps") if f.given("warmup_steps") else round(f.get("pct_start", 0.3) * total)
    if not 0 < peak_step < total:
        f.fail(f"onecycle needs its peak step (--warmup-steps, or --pct-start * T) in (0, {total}), got {peak_step}")
    pct_start = (peak_step + 1) / (total + 1)
    start, floor = f.get("warmup_start_lr"), f.get("min_lr")
    if (start is not None and not start > 0) or (floor is not None and not floor > 0):
        f.fail("onecycle needs --warmup-start-lr > 0 and --min-lr > 0 (they set torch's div factors)")
    div_factor = lr / start if start is not None else 25.0
    final_div_factor = (lr / div_factor) / floor if floor is not None else 1e4
    return {
        "type": "OneCycleLR",
        "max_lr": lr,
        "total_steps": total + 1,  # torch's floor is at total_steps - 1: put it at T like every schedule
        "pct_start": float(pct_start),
        "anneal_strategy": f.get("anneal_strategy", "cos"),
        "div_factor": div_factor,
        "final_div_factor": final_div_factor,
    }


def _cyclic(f: _Flags) -> dict[str, Any]:
    return {
        "type": "CyclicLR",
        "base_lr": f.get("min_lr", 0.0),
        "max_lr": float(f.get("lr")),
        "step_size_up": f.get("step_size", 2000),
        "mode": f.get("cyclic_mode", "triangular"),
        "gamma": f.get("gamma", 1.0),
    }


def _constant(f: _Flags) -> dict[str, Any]:
    return {"type": "WarmupConstant", **_warmup_args(f)}


_BUILDERS = {
    "constant": _constant,
    "step": _step,
    "multistep": _multistep,
    "linear": _decay_spec("WarmupLinear"),
    "exponential": _exponential,
    "cosine": _decay_spec("WarmupCosine"),
    "cosine-restarts": _cosine_restarts,
    "polynomial": _polynomial,
    "inverse-sqrt": _inverse_sqrt,
    "wsd": _wsd,
    "onecycle": _onecycle,
    "cyclic": _cyclic,
}


def _hf_spec(f: _Flags, name: str) -> dict[str, Any]:
    if name == "reduce_lr_on_plateau":
        args = {"factor": f.get("gamma"), "patience": f.get("patience"), "min_lr": f.get("min_lr")}
        return {"type": "ReduceLROnPlateau", **{k: v for k, v in args.items() if v is not None}}
    lr, total = float(f.get("lr")), f.get("total_steps")
    kwargs: dict[str, Any] = {}
    if f.given("num_cycles"):
        kwargs["num_cycles"] = f.whole("num_cycles") if name == "cosine_with_restarts" else f.get("num_cycles")
    if name == "polynomial":
        kwargs.update({k: v for k, v in (("lr_end", f.get("min_lr")), ("power", f.get("power"))) if v is not None})
    if name == "inverse_sqrt" and f.given("timescale"):
        kwargs["timescale"] = f.get("timescale")
    if name in ("cosine_with_min_lr", "cosine_warmup_with_min_lr"):
        kwargs["min_lr"] = f.need("min_lr")
    if name == "cosine_warmup_with_min_lr" and f.given("warmup_start_lr"):
        kwargs["warmup_lr_rate"] = f.get("warmup_start_lr") / lr
    if name == "warmup_stable_decay":
        if f.given("decay_steps"):
            kwargs["num_decay_steps"] = f.get("decay_steps")
        elif f.given("decay_fraction"):
            kwargs["num_decay_steps"] = round(f.get("decay_fraction") * f.need("total_steps"))
        else:
            f.fail(f"--lr-scheduler hf:{name} needs --decay-steps or --decay-fraction")
        if total is None:
            f.fail(f"--lr-scheduler hf:{name} needs --total-steps")
        shape = f.get("decay_shape", "cosine")
        if shape == "exponential":
            f.fail("--decay-shape for warmup_stable_decay must be one of linear, cosine, 1-sqrt (transformers' types)")
        kwargs.update(
            decay_type=shape, warmup_type=f.get("warmup_shape", "linear"), min_lr_ratio=f.get("min_lr", 0.0) / lr
        )
    spec: dict[str, Any] = {"type": "HFSchedule", "name": name}
    if name != "constant":
        spec["num_warmup_steps"] = f.get("warmup_steps", 0)
    if total is not None and name not in ("constant", "constant_with_warmup", "inverse_sqrt"):
        spec["num_training_steps"] = total
    if kwargs:
        spec["scheduler_specific_kwargs"] = kwargs
    return spec
