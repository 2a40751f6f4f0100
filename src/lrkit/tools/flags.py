"""The one argparse definition of the learning-rate schedule flags (``lrkit preview|plot`` and the trainer).

``add_schedule_arguments(parser)`` adds the flags; ``spec_from_args(args)`` turns the
parsed flags into a JSON spec that :func:`lrkit.build_scheduler` builds (with either
backend). The optimizer's ``lr`` is ``args.lr``: it is the peak of every schedule.

``--lr-scheduler`` takes a short name, a JSON spec (``'{"type": "WarmupCosine", ...}'``)
or ``@file.json``. The short names, the flags each reads and the spec it gives are the catalog's
(:mod:`lrkit.spec.catalog`, builders in :mod:`lrkit.spec.from_flags`): ``constant``, ``linear``,
``cosine``, ``polynomial``, ``wsd``, ``wsd-s``, ``power``, ``log-warmup``, ``inverse-sqrt``,
``cosine-restarts``, ``step``, ``multistep``,
``exponential``, ``onecycle``, ``cyclic`` and transformers' names as ``hf:<name>`` (bare where the name
does not clash: linear, cosine, polynomial and constant mean lrkit's schedules). This module owns the
flags themselves: their argparse definition, quantities and the token clock.

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
from typing import Any

from lrkit import schedules as S
from lrkit.schedules.clock import Quantity, QuantityError, RateError, Rates, clock_unit, parse_quantity
from lrkit.schedules.source import SourceError, loads_json, read_text_file
from lrkit.spec import CliName, spec_records

__all__ = [
    "short_names",
    "ScheduleFlagError",
    "add_schedule_arguments",
    "add_clock_arguments",
    "total_length",
    "scheduler_names",
    "spec_from_args",
]

# Flags every schedule accepts: the optimizer's LR and the run length.
_ALWAYS = {"lr", "total_steps", "total"}
#: quantity flag -> the step-count flag it stands for (a schedule accepts both or neither)
_QUANTITY_FLAGS = {"warmup": "warmup_steps", "total": "total_steps", "decay": "decay_steps"}
#: flags that count optimizer steps: converted to the clock of a schedule in tokens or samples
_STEP_COUNTS = ("warmup_steps", "total_steps", "decay_steps", "timescale", "cycle_steps", "cycle_warmup_steps")


class ScheduleFlagError(ValueError):
    """Schedule flags that do not fit together; the message names the flags and the valid choices."""


def short_names() -> dict[str, CliName]:
    """Every ``--lr-scheduler`` short name of the registered types (:mod:`lrkit.spec.catalog`), by name."""
    return {cli.name: cli for record in spec_records() for cli in record.cli}


def _typed_names() -> dict[str, str]:
    """What may be typed -> the short name: the names, their aliases, and ``hf:`` names without the prefix
    where that does not clash with a short name."""
    names = short_names()
    typed = {name: name for name in names}
    typed.update({alias: cli.name for cli in names.values() for alias in cli.aliases})
    for name in names:
        if name.startswith("hf:") and name[3:] not in typed:
            typed[name[3:]] = name
    return typed


def scheduler_names() -> list[str]:
    """Every name ``--lr-scheduler`` accepts (besides a JSON spec and ``@file.json``)."""
    typed = _typed_names()
    prefixed = sorted(name for name in typed if name.startswith("hf:"))
    return [*(name for name in typed if not name.startswith("hf:")), *prefixed]


def _canonical(name: str) -> str | None:
    return _typed_names().get(name.strip().lower())


def read_spec_source(text: str) -> str:
    """The text of a spec flag: ``@file.json`` is replaced by the file's contents (argparse errors).

    The file must be a regular file of at most :data:`lrkit.schedules.source.MAX_SOURCE_BYTES` bytes:
    ``@/dev/zero``, a FIFO, a directory or a bigger file is refused, naming the path, what it is and the cap.
    """
    source = text.strip()
    if source.startswith("@"):
        try:
            return read_text_file(source[1:], "spec file").strip()
        except SourceError as err:
            raise argparse.ArgumentTypeError(str(err)) from err
    return source


def _shown(value: object, limit: int = 200) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def parse_json_spec(source: str, label: str = "") -> dict[str, Any]:
    """A JSON spec object with a ``"type"`` key; ``label`` prefixes the argparse error.

    Bounded (:func:`lrkit.schedules.source.loads_json`): at most 1 MiB and 64 levels of nesting, so a
    hostile spec is an error, never a ``RecursionError``; ``NaN``/``Infinity`` are refused.
    """
    prefix = f"{label}: " if label else ""
    try:
        spec = loads_json(source, "the JSON spec")
    except SourceError as err:
        raise argparse.ArgumentTypeError(f"{prefix}{err}") from err
    except ValueError as err:  # json.JSONDecodeError, NaN/Infinity, an integer too long to convert
        raise argparse.ArgumentTypeError(f"{prefix}invalid JSON spec {_shown(source)}: {err}") from err
    if not isinstance(spec, dict) or "type" not in spec:
        raise argparse.ArgumentTypeError(f"{prefix}a JSON spec must be an object with a 'type' key, got {_shown(spec)}")
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
            "help": "schedule: one of {names}; or a JSON spec, or @file.json (default: constant)",
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
    (("--decay-steps",), {"type": int, "help": "wsd, wsd-s, power: length of the (each) decay"}),
    (
        ("--decay",),
        {
            "type": _quantity_text,
            "metavar": "Q",
            "help": "wsd: decay length as a quantity instead of --decay-steps: 500 (steps), 1Btok, 0.2dur",
        },
    ),
    (("--decay-fraction",), {"type": float, "help": "wsd, power: decay length as a fraction of T; wsd-s: of a cycle"}),
    (("--decay-shape",), {"choices": S.DECAY_SHAPES, "help": "wsd, wsd-s, power: decay shape (default linear)"}),
    (("--warmup-shape",), {"choices": ("linear", "cosine", "1-sqrt"), "help": "warmup_stable_decay: warmup_type"}),
    (("--power",), {"type": float, "help": "polynomial: exponent (default 1)"}),
    (("--power-coefficient",), {"type": float, "help": "power: a in min(lr, a * t ** b), an LR at t = 1"}),
    (("--power-exponent",), {"type": float, "help": "power: b in min(lr, a * t ** b), in [-1, 0)"}),
    (("--timescale",), {"type": int, "help": "inverse-sqrt: decay timescale in steps (default W)"}),
    (("--cycle-steps",), {"type": int, "help": "cosine-restarts: length of the first cycle; wsd-s: of every cycle"}),
    (("--cycle-mult",), {"type": int, "help": "cosine-restarts: each cycle is this many times longer (default 1)"}),
    (("--cycle-decay",), {"type": float, "help": "cosine-restarts: each cycle's peak is this times the last's"}),
    (("--cycle-warmup-steps",), {"type": int, "help": "cosine-restarts, wsd-s: re-warmup steps at each restart"}),
    (("--num-cycles",), {"type": float, "help": "cosine-restarts, wsd-s: number of cycles; HF cosine*: num_cycles"}),
    (("--pct-start",), {"type": float, "help": "onecycle: the peak is at step round(pct_start * T) (default 0.3)"}),
    (("--anneal-strategy",), {"choices": ("cos", "linear"), "help": "onecycle: annealing (default cos)"}),
    (("--cyclic-mode",), {"choices": ("triangular", "triangular2", "exp_range"), "help": "cyclic: mode"}),
    (("--patience",), {"type": int, "help": "reduce_lr_on_plateau, greedy: steps without improvement (default 10)"}),
)
#: dest -> the flag as typed (for messages)
_FLAG_OF: dict[str, str] = {names[0][2:].replace("-", "_"): names[0] for names, _ in _FLAG_TABLE}


def add_schedule_arguments(parser_or_group: Any) -> None:
    """Add the schedule flags to an ``argparse.ArgumentParser`` or argument group (the trainer's and the CLI's)."""
    for names, kwargs in _FLAG_TABLE:
        if "help" in kwargs and "{names}" in kwargs["help"]:
            kwargs = {**kwargs, "help": kwargs["help"].format(names=", ".join(scheduler_names()))}
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
        if isinstance(value, int):  # exact at any size (float(10**30) is not)
            return value
        if float(value) != int(value):
            self.fail(f"{_FLAG_OF.get(dest, dest)} must be a whole number for {self.name}, got {value!r}")
        return int(value)


def spec_from_args(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser | None = None,
    rates: Rates | None = None,
    missing_rate: str = "lrkit preview/plot: pass --tokens-per-step, and --sequence-length for samples",
) -> dict[str, Any]:
    """The JSON spec the schedule flags describe (buildable by :func:`lrkit.build_scheduler`).

    Args:
        args: parsed flags (from :func:`add_schedule_arguments`).
        parser: when given, misuse is reported with ``parser.error`` (usage + exit 2).
        rates: tokens per optimizer step and per sample, to convert lengths given in different units
            (``--warmup-steps 2000 --total 10Btok``); unknown by default.
        missing_rate: what the message of a conversion that lacks its rate adds, in parentheses: how to give it.

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
    names = short_names()
    accepted = _ALWAYS if isinstance(choice, dict) else _ALWAYS | names[str(choice)].flags
    accepted = accepted | {q for q, count in _QUANTITY_FLAGS.items() if count in accepted}
    label = "a JSON spec" if isinstance(choice, dict) else str(choice)
    what = "a JSON spec (it holds its own arguments)" if isinstance(choice, dict) else f"--lr-scheduler {label}"
    flags = _Flags(args, label, parser)
    for dest, flag in _FLAG_OF.items():
        if dest == "lr_scheduler" or dest in accepted or not flags.given(dest):
            continue
        users = [name for name, cli in names.items() if _QUANTITY_FLAGS.get(dest, dest) in cli.flags]
        flags.fail(f"{flag} does not apply to {what}; it applies to: {', '.join(users)}")
    if isinstance(choice, dict):
        return dict(choice)
    resolved, unit = _on_clock(flags, rates or Rates(), missing_rate)
    cli = names[str(choice)]
    if unit != "steps" and not cli.clockable:
        clockable = [name for name, other in names.items() if other.clockable]
        flags.fail(
            f"--lr-scheduler {choice} counts optimizer steps; lengths in {unit} work with "
            f"{', '.join(clockable)} (or a JSON Clocked spec)"
        )
    spec = _spec_of(_Flags(resolved, label, parser), cli)
    return spec if unit == "steps" else {"type": "Clocked", "unit": unit, "schedule": spec}


def _spec_of(flags: _Flags, cli: CliName) -> dict[str, Any]:
    """The spec of short name ``cli`` from flags whose lengths are all in one clock's ticks."""
    if flags.given("warmup_start_lr") and not flags.get("warmup_steps", 0) and cli.name != "onecycle":
        flags.fail("--warmup-start-lr needs --warmup-steps > 0")
    if flags.given("decay_steps") and flags.given("decay_fraction"):
        flags.fail("give --decay-steps or --decay-fraction, not both")
    if cli.needs_total:
        flags.need("total_steps")
    return cli.build(flags)


def _on_clock(flags: _Flags, rates: Rates, missing_rate: str) -> tuple[argparse.Namespace, str]:
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
        flags.fail(f"{err} ({missing_rate})")
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
