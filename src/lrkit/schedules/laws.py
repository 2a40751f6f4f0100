"""Loss laws: predict a run's loss curve from its LR schedule alone, once a few constants are fitted.

Pure numpy (no torch); :func:`fit_law` imports scipy when it runs, so importing lrkit never needs scipy
(``pip install lrkit[law]``).

Conventions. ``lrs`` is the LR of each optimizer update, in order: ``lrs[i]`` is ``eta_(i+1)``, the LR of update
``i + 1`` (the trainer's ``metrics.jsonl`` record of step ``s`` holds the LR of update ``s``). A point ``t`` is
a number of updates done, ``1 <= t <= T``: ``L(t)`` is the loss after ``t`` updates. The *drops* are
``d_k = eta_(k-1) - eta_k``; the rise of a warmup (every step up to the first time the LR reaches its maximum)
gives no drop: ``d_k = 0`` for ``k`` up to that step, as both papers leave warmup out of the annealing term.
Rises after the peak (cyclic schedules) are negative drops. ``S1(t) = sum_(i<=t) eta_i`` is the forward area,
warmup included (the multi-power law's ``S1(t) + S_W``).

Two forms (``FORMS``):

* ``annealing``: Tissue et al., "Scaling Law with Learning Rate Annealing" (arXiv 2408.11029)::

      L(t) = L0 + A * S1(t)^(-alpha) - C * S2(t)
      S2(t) = sum_(i<=t) m_i,   m_i = decay * m_(i-1) + d_i

  ``decay`` is the paper's momentum decay factor lambda: the drops it remembers fade over about
  ``1 / (1 - decay)`` updates. :func:`fit_law` fits it with the other constants unless it is given a value
  (the paper used 0.999, a time scale of 1,000 updates, on runs of tens of thousands). Constants:
  ``L0, A, alpha, C, decay``.

* ``mpl``: Luo et al., "A Multi-Power Law for Loss Curve Prediction Across Learning Rate Schedules"
  (ICLR 2025, arXiv 2503.12811)::

      L(t) = L0 + A * S1(t)^(-alpha) - LD(t)
      LD(t) = B * sum_(k<=t) d_k * G(eta_k^(-gamma) * S_k(t)),   G(x) = 1 - (C*x + 1)^(-beta)
      S_k(t) = sum_(tau=k..t) eta_tau

  Constants: ``L0, A, alpha, B, C, beta, gamma``.

Cost. ``S1`` and ``S2`` are O(T) for the whole curve (``S2``'s recurrence is a blocked closed form, exact, no
Python loop). ``LD`` has no recurrence (``G`` is not linear in ``S_k(t)``), so it is evaluated only at the points
asked for, and only over the steps ``k`` whose drop is not zero: O(P * K) for P points and K LR changes
after the peak (K = T for cosine, the decay length for WSD, a handful for step). A whole curve is predicted on a
grid of a few hundred points; ``lrkit tune`` needs the last point only, O(K) per schedule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "FORMS",
    "CONSTANTS",
    "MIN_POINTS",
    "MIN_STEPS",
    "Law",
    "LawError",
    "RunCurve",
    "annealing_area",
    "drops",
    "fit_law",
    "forward_area",
    "law_from_dict",
    "load_law",
    "mpl_drop_term",
    "predict",
    "predict_final",
]

FORMS = ("mpl", "annealing")
#: the constants of each form, in the order of the formula
CONSTANTS: dict[str, tuple[str, ...]] = {
    "mpl": ("L0", "A", "alpha", "B", "C", "beta", "gamma"),
    "annealing": ("L0", "A", "alpha", "C", "decay"),
}
#: a run needs at least this many updates ...
MIN_STEPS = 20
#: ... and this many loss points to be fitted
MIN_POINTS = 10
#: the default momentum decay factor lambda of the annealing form (Tissue et al.)
DEFAULT_DECAY = 0.999
#: LRs below this count as this in ``eta_k^(-gamma)`` (an LR of 0 would divide by 0)
_TINY_LR = 1e-30
#: block length of the S2 recurrence: decay^(-block) stays far from overflow for decay >= 0.9
_BLOCK = 2048
#: elements of one (rows x points x terms) block of the LD sum
_CHUNK_ELEMENTS = 1 << 22


class LawError(ValueError):
    """Bad input to a loss law: the message names the run, the step or the key, the value and what was expected."""


# ----------------------------------------------------------------------------- the areas


def _as_lrs(lrs: Any) -> np.ndarray:
    a = np.asarray(lrs, dtype=np.float64)
    if a.ndim == 0 or a.shape[-1] == 0:
        raise LawError(f"expected an array of LRs (steps on the last axis), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        where = np.argwhere(~np.isfinite(a))[0]
        raise LawError(f"the LRs must be finite; got {float(a[tuple(where)])!r} at update {int(where[-1]) + 1}")
    if np.any(a < 0):
        where = np.argwhere(a < 0)[0]
        raise LawError(f"the LRs must be >= 0; got {float(a[tuple(where)])!r} at update {int(where[-1]) + 1}")
    return a


def forward_area(lrs: Any) -> np.ndarray:
    """``S1``: ``S1[..., t - 1] = sum_(i<=t) eta_i``, the area under the LR curve after ``t`` updates."""
    return np.cumsum(_as_lrs(lrs), axis=-1)


def drops(lrs: Any) -> np.ndarray:
    """``d[..., k - 1] = eta_(k-1) - eta_k`` (``d_1 = 0``), zero up to the first step at the maximum LR (warmup)."""
    a = _as_lrs(lrs)
    d = np.zeros_like(a)
    d[..., 1:] = a[..., :-1] - a[..., 1:]
    peak = np.argmax(a, axis=-1)  # the first index of the maximum
    d[np.arange(a.shape[-1]) <= peak[..., None]] = 0.0
    return d


def _momentum(x: np.ndarray, decay: float) -> np.ndarray:
    """``m_i = decay * m_(i-1) + x_i`` (``m_0 = 0``) along the last axis, in blocks of :data:`_BLOCK` steps.

    Within a block, ``m_i = decay^i * (m_0 + sum_(j<=i) x_j decay^(-j))`` (cumulative sums, exact up to rounding),
    ``m_0`` the previous block's last ``m``.
    """
    m = np.empty_like(x)
    carry = np.zeros(x.shape[:-1])
    total = x.shape[-1]
    # decay^(-block) stays below e^300 (far from float64 overflow) for any decay
    block_len = _BLOCK if decay == 0.0 else min(_BLOCK, max(1, int(300.0 / -math.log(decay))))
    for first in range(0, total, block_len):
        block = x[..., first : first + block_len]
        n = block.shape[-1]
        if decay == 0.0:
            m[..., first : first + n] = block
            continue
        up = decay ** np.arange(1, n + 1, dtype=np.float64)  # decay^j, j = 1..n within the block
        m[..., first : first + n] = up * (carry[..., None] + np.cumsum(block / up, axis=-1))
        carry = m[..., first + n - 1]
    return m


def _check_decay(decay: float) -> None:
    if not 0.0 <= decay < 1.0:
        raise LawError(f"decay (lambda) must be in [0, 1), got {decay!r}")


def annealing_area(lrs: Any, decay: float = DEFAULT_DECAY) -> np.ndarray:
    """``S2`` of Tissue et al.: ``S2[..., t - 1] = sum_(i<=t) m_i``, ``m_i = decay * m_(i-1) + d_i``."""
    _check_decay(decay)
    return np.cumsum(_momentum(drops(lrs), decay), axis=-1)


def mpl_drop_term(lrs: Any, points: Any, C: float, beta: float, gamma: float) -> np.ndarray:
    """``LD(t) / B`` of the multi-power law at ``points`` (numbers of updates, ``1..T``).

    ``lrs`` is one run (shape ``(T,)``, result ``(P,)``) or many of the same length (``(N, T)``, result
    ``(N, P)``). Only the steps with a non-zero drop in some row are summed, in blocks of bounded memory.
    """
    a = _as_lrs(lrs)
    one = a.ndim == 1
    a2 = a[None, :] if one else a.reshape(-1, a.shape[-1])
    t = np.asarray(points, dtype=np.int64).reshape(-1)
    total = a2.shape[-1]
    if t.size and (t.min() < 1 or t.max() > total):
        raise LawError(f"points must be numbers of updates in 1..{total}, got {t.min()}..{t.max()}")
    d = drops(a2)
    ks = np.flatnonzero(np.any(d != 0.0, axis=0))  # 0-based k - 1 of the terms that count
    out = np.zeros((a2.shape[0], t.size))
    if ks.size == 0 or t.size == 0:
        return out[0] if one else out.reshape(*a.shape[:-1], t.size)
    cum = np.concatenate([np.zeros((a2.shape[0], 1)), np.cumsum(a2, axis=-1)], axis=-1)  # cum[:, t] = S1(t)
    dk = d[:, ks]  # (N, K)
    scale = np.maximum(a2[:, ks], _TINY_LR) ** (-gamma)  # eta_k^(-gamma)
    before = cum[:, ks]  # S1(k - 1): S_k(t) = S1(t) - S1(k - 1)
    rows = max(1, _CHUNK_ELEMENTS // max(1, ks.size))
    for r0 in range(0, a2.shape[0], rows):
        r = slice(r0, r0 + rows)
        per = max(1, _CHUNK_ELEMENTS // max(1, ks.size * min(rows, a2.shape[0])))
        for p0 in range(0, t.size, per):
            tp = t[p0 : p0 + per]
            s = cum[r][:, tp][:, :, None] - before[r][:, None, :]  # (n, p, K)
            inside = (ks[None, :] < tp[:, None])[None, :, :]  # k <= t, i.e. ks (= k - 1) < t
            g = 1.0 - (C * scale[r][:, None, :] * np.maximum(s, 0.0) + 1.0) ** (-beta)
            out[r, p0 : p0 + per] = np.einsum("npk,nk->np", np.where(inside, g, 0.0), dk[r])
    return out[0] if one else out.reshape(*a.shape[:-1], t.size)


# ----------------------------------------------------------------------------- the law


@dataclass
class Law:
    """A fitted loss law: its form, its constants, and what it was fitted on (the JSON law file)."""

    form: str
    constants: dict[str, float]
    fitted_on: list[Any] = field(default_factory=list)
    fit_error: dict[str, Any] = field(default_factory=dict)
    lrkit_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": self.form,
            "constants": dict(self.constants),
            "fitted_on": list(self.fitted_on),
            "fit_error": dict(self.fit_error),
            "lrkit_version": self.lrkit_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def law_from_dict(data: Any, where: str = "the law") -> Law:
    """A :class:`Law` from its JSON object, validated.

    Raises:
        LawError: not an object, a missing or unknown key, an unknown form, a constant missing, unknown, not a
            finite number or out of its range; the message names ``where``, the key, the value and what was expected.
    """
    if not isinstance(data, Mapping):
        raise LawError(f"{where}: expected a JSON object, got {type(data).__name__}")
    keys = ("form", "constants", "fitted_on", "fit_error", "lrkit_version")
    for key in ("form", "constants"):
        if key not in data:
            raise LawError(f"{where}: missing key {key!r}; a law file has the keys {', '.join(keys)}")
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise LawError(f"{where}: unknown key {unknown[0]!r}; a law file has the keys {', '.join(keys)}")
    form = data["form"]
    if form not in FORMS:
        raise LawError(f"{where}: 'form' must be one of {', '.join(FORMS)}, got {form!r}")
    constants = data["constants"]
    if not isinstance(constants, Mapping):
        raise LawError(f"{where}: 'constants' must be an object, got {type(constants).__name__}")
    names = CONSTANTS[form]
    for name in names:
        if name not in constants:
            raise LawError(f"{where}: constants: missing {name!r}; the {form} form needs {', '.join(names)}")
    extra = sorted(set(constants) - set(names))
    if extra:
        raise LawError(f"{where}: constants: unknown {extra[0]!r}; the {form} form has {', '.join(names)}")
    values: dict[str, float] = {}
    for name in names:
        value = constants[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise LawError(f"{where}: constants: {name!r} must be a finite number, got {value!r}")
        if name != "L0" and name != "decay" and not value > 0:
            raise LawError(f"{where}: constants: {name!r} must be > 0, got {value!r}")
        values[name] = float(value)
    if form == "annealing" and not 0.0 <= values["decay"] < 1.0:
        raise LawError(f"{where}: constants: 'decay' must be in [0, 1), got {values['decay']!r}")
    fitted_on = data.get("fitted_on", [])
    if not isinstance(fitted_on, list):
        raise LawError(f"{where}: 'fitted_on' must be a list, got {type(fitted_on).__name__}")
    fit_error = data.get("fit_error", {})
    if not isinstance(fit_error, Mapping):
        raise LawError(f"{where}: 'fit_error' must be an object, got {type(fit_error).__name__}")
    version = data.get("lrkit_version", "")
    if not isinstance(version, str):
        raise LawError(f"{where}: 'lrkit_version' must be a string, got {version!r}")
    return Law(form, values, list(fitted_on), dict(fit_error), version)


def load_law(path: str) -> Law:
    """Read and validate a JSON law file (:func:`law_from_dict`); errors name the path."""
    try:
        with open(path) as f:
            text = f.read(1 << 24)
    except OSError as err:
        raise LawError(f"cannot read the law file {path!r}: {err.strerror or err}") from err
    try:
        data = json.loads(text)
    except ValueError as err:
        raise LawError(f"the law file {path!r} is not valid JSON: {err}") from err
    return law_from_dict(data, f"the law file {path!r}")


def _loss(form: str, c: Mapping[str, float], lrs: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The law at ``points`` (1-based numbers of updates) of ``lrs`` (``(T,)`` or ``(N, T)``)."""
    s1 = np.cumsum(lrs, axis=-1)[..., points - 1]
    with np.errstate(divide="ignore"):
        head = c["L0"] + c["A"] * s1 ** (-c["alpha"])
    if form == "annealing":
        return head - c["C"] * annealing_area(lrs, c["decay"])[..., points - 1]
    return head - c["B"] * mpl_drop_term(lrs, points, c["C"], c["beta"], c["gamma"])


def predict(law: Law, lrs: Any, points: Any = None) -> np.ndarray:
    """The predicted loss after ``points`` updates (default every ``t = 1..T``) of the schedule ``lrs``.

    ``lrs`` is ``(T,)`` or ``(N, T)`` (the same points for every row). Where ``S1(t) = 0`` (a warmup from 0 at
    ``t = 1``) the prediction is ``inf``.
    """
    a = _as_lrs(lrs)
    total = a.shape[-1]
    t = np.arange(1, total + 1) if points is None else np.asarray(points, dtype=np.int64).reshape(-1)
    if t.size and (t.min() < 1 or t.max() > total):
        raise LawError(f"points must be numbers of updates in 1..{total}, got {t.min()}..{t.max()}")
    return _loss(law.form, law.constants, a, t)


def predict_final(law: Law, lrs: Any) -> np.ndarray:
    """The predicted loss after the last update of each row of ``lrs`` (``(N, T)`` -> ``(N,)``; ``(T,)`` -> ``()``).

    The fast path of ``lrkit tune``: one pass over each row, no (rows x points x terms) block. ``S2(T)`` is
    ``sum_j d_j (1 - decay^(T-j+1)) / (1 - decay)``; ``LD(T)`` sums ``d_k G(eta_k^(-gamma) (S1(T) - S1(k-1)))``.
    """
    a = _as_lrs(lrs)
    rows = a.reshape(-1, a.shape[-1])
    c = law.constants
    total = rows.shape[-1]
    cum = np.cumsum(rows, axis=-1)
    with np.errstate(divide="ignore"):
        out = c["L0"] + c["A"] * cum[:, -1] ** (-c["alpha"])
    if total > 1:
        d = rows[:, :-1] - rows[:, 1:]  # d_k for k = 2..T (d_1 = 0)
        d[np.arange(1, total) <= np.argmax(rows, axis=-1)[:, None]] = 0.0  # warmup: no drop
        if law.form == "annealing":
            lam = c["decay"]
            j = np.arange(2, total + 1, dtype=np.float64)
            weight = (total - j + 1) if lam == 1.0 else -np.expm1((total - j + 1) * math.log(lam)) / (1.0 - lam)
            out = out - c["C"] * (d @ weight)
        else:
            x = np.maximum(rows[:, 1:], _TINY_LR)
            np.power(x, -c["gamma"], out=x)
            x *= c["C"]
            x *= cum[:, -1:] - cum[:, :-1]  # S_k(T) = S1(T) - S1(k - 1)
            x += 1.0
            np.power(x, -c["beta"], out=x)  # 1 - G
            out = out - c["B"] * (d.sum(axis=-1) - np.einsum("nk,nk->n", d, x))
    return out.reshape(a.shape[:-1])


# ----------------------------------------------------------------------------- fitting


@dataclass
class RunCurve:
    """One run to fit: the LR of every update and the loss measured after ``points[i]`` updates.

    Attributes:
        name: the run, for messages and ``fitted_on``.
        lrs: ``eta_1..eta_T``.
        points: numbers of updates (``1..T``) at which ``losses`` were measured.
        losses: the measured losses.
    """

    name: str
    lrs: np.ndarray
    points: np.ndarray
    losses: np.ndarray

    def checked(self) -> RunCurve:
        """The run with arrays validated (clear :class:`LawError` otherwise)."""
        try:
            lrs = _as_lrs(self.lrs)
        except LawError as err:
            raise LawError(f"{self.name}: {err}") from None
        if lrs.ndim != 1:
            raise LawError(f"{self.name}: expected one LR per update (1-D), got shape {lrs.shape}")
        if lrs.size < MIN_STEPS:
            raise LawError(f"{self.name}: too short to fit: {lrs.size} updates; a run needs at least {MIN_STEPS}")
        if not np.any(lrs > 0):
            raise LawError(f"{self.name}: every LR is 0; the law needs a positive LR")
        points = np.asarray(self.points, dtype=np.int64).reshape(-1)
        losses = np.asarray(self.losses, dtype=np.float64).reshape(-1)
        if points.shape != losses.shape:
            raise LawError(f"{self.name}: {points.size} points but {losses.size} losses")
        bad = ~np.isfinite(losses)
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            value = float(losses[i])
            raise LawError(f"{self.name}: the loss at step {int(points[i])} is {value!r}; losses must be finite")
        if points.size and (points.min() < 1 or points.max() > lrs.size):
            raise LawError(f"{self.name}: loss points must be in 1..{lrs.size}, got {points.min()}..{points.max()}")
        keep = np.cumsum(lrs)[points - 1] > 0 if points.size else np.zeros(0, dtype=bool)
        points, losses = points[keep], losses[keep]
        if points.size < MIN_POINTS:
            raise LawError(
                f"{self.name}: too few loss points to fit: {points.size} (after the first positive LR); "
                f"a run needs at least {MIN_POINTS}"
            )
        return RunCurve(self.name, lrs, points, losses)


def _thin(run: RunCurve, max_points: int) -> RunCurve:
    if run.points.size <= max_points:
        return run
    index = np.unique(np.linspace(0, run.points.size - 1, max_points).round().astype(np.int64))
    return RunCurve(run.name, run.lrs, run.points[index], run.losses[index])


def _unpack(form: str, x: np.ndarray, decay: float | None) -> dict[str, float]:
    """The constants from the fit's vector: ``L0``, then the logarithms of the others; a fitted ``decay`` is last,
    as ``v = ln(1 / (1 - decay))``, the log of the momentum's time scale in updates."""
    names = [n for n in CONSTANTS[form] if n != "decay"]
    values = {"L0": float(x[0]), **{n: float(math.exp(v)) for n, v in zip(names[1:], x[1 : len(names)])}}
    if form == "annealing":
        values["decay"] = decay if decay is not None else float(-math.expm1(-x[len(names)]))
    return values


class _MplCache:
    """What the multi-power law's residuals reuse for one run: its S1, drops and ``S_k(t)`` at the fit points."""

    def __init__(self, run: RunCurve) -> None:
        cum = np.concatenate([[0.0], np.cumsum(run.lrs)])
        d = drops(run.lrs)
        ks = np.flatnonzero(d != 0.0)
        self.s1 = cum[run.points]
        self.dk = d[ks]
        self.log_eta = np.log(np.maximum(run.lrs[ks], _TINY_LR))
        self.s = np.maximum(cum[run.points][:, None] - cum[ks][None, :], 0.0)
        self.inside = ks[None, :] < run.points[:, None]

    def loss(self, c: Mapping[str, float]) -> np.ndarray:
        head = c["L0"] + c["A"] * self.s1 ** (-c["alpha"])
        if self.dk.size == 0:
            return head
        x = c["C"] * np.exp(-c["gamma"] * self.log_eta)[None, :] * self.s
        g = np.where(self.inside, 1.0 - (x + 1.0) ** (-c["beta"]), 0.0)
        return head - c["B"] * (g @ self.dk)

    def jacobian(self, c: Mapping[str, float]) -> np.ndarray:
        """d loss / d (L0, ln A, ln alpha, ln B, ln C, ln beta, ln gamma) at the fit points."""
        power = c["A"] * self.s1 ** (-c["alpha"])
        jac = np.zeros((self.s1.size, 7))
        jac[:, 0] = 1.0
        jac[:, 1] = power
        jac[:, 2] = -power * np.log(self.s1) * c["alpha"]
        if self.dk.size == 0:
            return jac
        beta, b = c["beta"], c["B"]
        x = c["C"] * np.exp(-c["gamma"] * self.log_eta)[None, :] * self.s  # C * eta^-gamma * S
        u = x + 1.0
        w = np.where(self.inside, u ** (-beta), 1.0)  # u^-beta; 1 outside the sum (g = 0 there)
        dw = np.where(self.inside, beta * w / u * x, 0.0)  # -dg/dlnC... = beta u^(-beta-1) x
        jac[:, 3] = -b * ((1.0 - w) @ self.dk)
        jac[:, 4] = -b * (dw @ self.dk)
        jac[:, 5] = -b * ((w * np.log(u) * beta) @ self.dk)
        jac[:, 6] = -b * ((dw * -self.log_eta[None, :] * c["gamma"]) @ self.dk)
        return jac


class _AnnealingCache:
    """What the annealing form's residuals reuse for one run: its S1 and drops; ``S2`` for the last ``decay``."""

    def __init__(self, run: RunCurve, fit_decay: bool) -> None:
        self.s1 = np.cumsum(run.lrs)[run.points - 1]
        self.d = drops(run.lrs)
        self.index = run.points - 1
        self.fit_decay = fit_decay
        self._decay = math.nan
        self._m = self._s2 = np.zeros(0)

    def s2(self, decay: float) -> np.ndarray:
        if decay != self._decay:
            self._decay = decay
            self._m = _momentum(self.d, decay)
            self._s2 = np.cumsum(self._m)[self.index]
        return self._s2

    def loss(self, c: Mapping[str, float]) -> np.ndarray:
        return c["L0"] + c["A"] * self.s1 ** (-c["alpha"]) - c["C"] * self.s2(c["decay"])

    def jacobian(self, c: Mapping[str, float]) -> np.ndarray:
        """d loss / d (L0, ln A, ln alpha, ln C[, v]) at the fit points, ``v = ln(1 / (1 - decay))``.

        ``dm_i / d decay = m_(i-1) + decay * dm_(i-1) / d decay``: the same recurrence, driven by ``m`` shifted one
        update; ``d decay / dv = 1 - decay``.
        """
        power = c["A"] * self.s1 ** (-c["alpha"])
        s2 = self.s2(c["decay"])
        columns = [np.ones_like(power), power, -power * np.log(self.s1) * c["alpha"], -c["C"] * s2]
        if self.fit_decay:
            shifted = np.concatenate([[0.0], self._m[:-1]])
            ds2 = np.cumsum(_momentum(shifted, c["decay"]))[self.index]
            columns.append(-c["C"] * ds2 * (1.0 - c["decay"]))
        return np.stack(columns, 1)


def _start(
    form: str, runs: Sequence[RunCurve], caches: Sequence[Any], rng: np.random.Generator, decay: float
) -> np.ndarray:
    """A random start near the data: L0 below the lowest loss, A matching the first point, the rest log-uniform
    (the annealing form's C from ``S2`` at ``decay``)."""
    losses = np.concatenate([r.losses for r in runs])
    low, high = float(losses.min()), float(losses.max())
    spread = max(high - low, 1e-3 * max(abs(low), 1.0))
    l0 = low - rng.uniform(0.05, 1.0) * spread
    alpha = rng.uniform(0.2, 0.8)
    i = int(np.argmin([float(c.s1[0]) for c in caches]))
    a = max(float(runs[i].losses[0]) - l0, 1e-6) * float(caches[i].s1[0]) ** alpha
    peak = max(float(r.lrs.max()) for r in runs)
    if form == "annealing":
        s2 = max(float(np.abs(c.s2(decay)).max()) for c in caches) or 1.0
        cc = rng.uniform(0.05, 0.5) * spread / s2
        return np.array([l0, math.log(a), math.log(alpha), math.log(cc)])
    b = rng.uniform(0.05, 0.5) * spread / peak
    return np.array(
        [
            l0,
            math.log(a),
            math.log(alpha),
            math.log(b),
            math.log(10 ** rng.uniform(-1.5, 1.0)),
            math.log(rng.uniform(0.3, 1.0)),
            math.log(rng.uniform(0.3, 0.7)),
        ]
    )


def fit_law(
    runs: Sequence[RunCurve],
    form: str = "mpl",
    *,
    restarts: int = 8,
    seed: int = 0,
    decay: float | None = None,
    max_points: int = 256,
    huber_scale: float | None = None,
    max_nfev: int = 500,
    fit_from: int = 1,
) -> Law:
    """Fit the constants of ``form`` to one or more runs jointly (shared constants).

    ``scipy.optimize.least_squares(loss="huber")`` from ``restarts`` seeded random starts; the best cost wins.
    Positive constants are fitted as logarithms. Each run's losses are thinned to ``max_points`` evenly spaced
    points. The Huber scale is ``huber_scale`` or 1% of the median loss. The annealing form's ``decay`` (the
    paper's lambda) is fitted with the rest when ``decay`` is None (its time scale ``1 / (1 - decay)`` between 1
    update and 10 times the longest run), and fixed otherwise (the paper used 0.999 on runs of tens of
    thousands of updates: a time scale of 1,000 updates).
    Losses measured after fewer than ``fit_from`` updates are left out of the fit (the early, warmup-dominated
    part of a curve that the laws describe least well); the LRs of every update still count in the areas, and
    ``fit_error`` covers every point, and the fitted ones apart.

    Returns:
        the law, with ``fit_error[name] = {"rms_rel": ..., "final_rel": ..., "points": ..., "rms_rel_fitted": ...,
        "points_fitted": ...}`` per run: the RMS of ``(predicted - measured) / measured`` over the run's points,
        that ratio at its last point, the number of points, and the RMS over the points from ``fit_from`` on
        (before thinning), and their number.

    Raises:
        LawError: an unknown form, no runs, or a run that cannot be fitted (too short, non-finite losses, ...).
        ImportError: scipy is not installed (``pip install lrkit[law]``).
    """
    if form not in FORMS:
        raise LawError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    if not runs:
        raise LawError("no runs to fit")
    if restarts < 1:
        raise LawError(f"restarts must be >= 1, got {restarts}")
    if fit_from < 1:
        raise LawError(f"fit_from must be a number of updates >= 1, got {fit_from}")
    if decay is not None:
        _check_decay(decay)
    try:
        from scipy.optimize import least_squares
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("fitting a loss law needs scipy: pip install 'lrkit[law]' (or scipy)") from err
    checked = [r.checked() for r in runs]
    late = [RunCurve(r.name, r.lrs, r.points[r.points >= fit_from], r.losses[r.points >= fit_from]) for r in checked]
    for run, whole in zip(late, checked):
        if run.points.size < MIN_POINTS:
            raise LawError(
                f"{run.name}: too few loss points to fit from update {fit_from} on: {run.points.size} of "
                f"{whole.points.size}; a run needs at least {MIN_POINTS}"
            )
    thinned = [_thin(r, max_points) for r in late]
    fit_decay = form == "annealing" and decay is None
    caches: list[Any] = [_MplCache(r) if form == "mpl" else _AnnealingCache(r, fit_decay) for r in thinned]
    observed = np.concatenate([r.losses for r in thinned])
    f_scale = huber_scale if huber_scale is not None else 0.01 * float(np.median(np.abs(observed))) or 1e-3

    def residuals(x: np.ndarray) -> np.ndarray:
        c = _unpack(form, x, decay)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            pred = np.concatenate([cache.loss(c) for cache in caches])
        r = pred - observed
        return np.where(np.isfinite(r), r, 1e6)

    def jacobian(x: np.ndarray) -> np.ndarray:
        c = _unpack(form, x, decay)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            jac = np.concatenate([cache.jacobian(c) for cache in caches])
        return np.where(np.isfinite(jac), jac, 0.0)

    n = len(CONSTANTS[form]) - (1 if form == "annealing" and not fit_decay else 0)
    lower = np.full(n, -30.0)
    upper = np.full(n, 30.0)
    lower[0], upper[0] = -np.inf, np.inf
    lower[2], upper[2] = math.log(1e-3), math.log(5.0)  # alpha
    if form == "mpl":
        lower[5], upper[5] = math.log(0.05), math.log(5.0)  # beta
        lower[6], upper[6] = math.log(0.05), math.log(2.0)  # gamma
    longest = max(r.lrs.size for r in thinned)
    if fit_decay:  # v = ln(time scale): 1 update .. 10 x the longest run
        lower[4], upper[4] = 0.0, math.log(10.0 * longest)
    rng = np.random.default_rng(seed)
    best: Any = None
    for _ in range(restarts):
        if fit_decay:  # time scales log-uniform from 10 updates to the longest run
            v = rng.uniform(math.log(10.0), math.log(max(longest, 11)))
            x0 = np.append(_start(form, thinned, caches, rng, float(-math.expm1(-v))), v)
        else:
            x0 = _start(form, thinned, caches, rng, DEFAULT_DECAY if decay is None else decay)
        x0 = np.clip(x0, lower + 1e-9, upper - 1e-9)
        result = least_squares(
            residuals, x0, jac=jacobian, bounds=(lower, upper), loss="huber", f_scale=f_scale, max_nfev=max_nfev
        )
        if best is None or result.cost < best.cost:
            best = result
    constants = _unpack(form, best.x, decay)
    law = Law(form, constants)
    errors: dict[str, Any] = {}
    for run in checked:
        pred = predict(law, run.lrs, run.points)
        rel = (pred - run.losses) / run.losses
        fitted = run.points >= fit_from
        errors[run.name] = {
            "rms_rel": float(np.sqrt(np.mean(rel**2))),
            "final_rel": float(rel[-1]),
            "points": int(run.points.size),
            "rms_rel_fitted": float(np.sqrt(np.mean(rel[fitted] ** 2))),
            "points_fitted": int(np.count_nonzero(fitted)),
        }
    law.fit_error = errors
    return law
