"""PyTorch's learning-rate formulas as pure functions, in torch 2.13's order of operations.

No torch import: this is the math layer. The optimizer-bound classes in
:mod:`lrkit.schedulers.torch_compat` call these functions and nothing else computes them.

PyTorch computes most schedules *recursively* ("chainable"): the LR after step
``e`` is derived from the LR after step ``e - 1`` (``group["lr"]``), not from the
base LR. The closed forms are used only by ``step(epoch)`` and by
``SequentialLR`` at a milestone. The two differ in the last bits, so bit-exact
parity needs both, each written exactly as torch evaluates it. Every expression
below keeps torch's operand order; do not "simplify" them.

Notation: ``lr`` is the current LR of one parameter group, ``base_lr`` its
``initial_lr``, ``e`` the new ``last_epoch`` (number of completed optimizer steps).

Every function is plain arithmetic on its arguments, so an LR (or argument) that is a
``torch.Tensor`` is computed exactly as torch computes it, in the tensor's dtype: the
schedulers pass a group's LR in whatever type the group holds it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence

# --- StepLR ------------------------------------------------------------------


def step_lr_recursive(lr: float, e: int, step_size: int, gamma: float) -> float:
    """``lr * gamma`` when ``e`` is a positive multiple of ``step_size``, else ``lr``."""
    if e == 0 or e % step_size != 0:
        return lr
    return lr * gamma


def step_lr_closed(base_lr: float, e: int, step_size: int, gamma: float) -> float:
    """``base_lr * gamma ** (e // step_size)``."""
    return base_lr * gamma ** (e // step_size)


# --- MultiStepLR ---------------------------------------------------------------


def multistep_lr_recursive(lr: float, e: int, milestone_counts: dict[int, int], gamma: float) -> float:
    """``lr * gamma ** count(e)`` at a milestone (repeated milestones count twice), else ``lr``."""
    count = milestone_counts.get(e)
    if count is None:
        return lr
    return lr * gamma**count


def multistep_lr_closed(base_lr: float, e: int, sorted_milestones: Sequence[int], gamma: float) -> float:
    """``base_lr * gamma ** (number of milestones <= e)``."""
    return base_lr * gamma ** bisect_right(sorted_milestones, e)


# --- ConstantLR --------------------------------------------------------------


def constant_lr_recursive(lr: float, e: int, factor: float, total_iters: int) -> float:
    """``lr * factor`` at step 0, ``lr * (1 / factor)`` at ``total_iters``, else ``lr``."""
    if e == 0:
        return lr * factor
    if e != total_iters:
        return lr
    return lr * (1.0 / factor)


def constant_lr_closed(base_lr: float, e: int, factor: float, total_iters: int) -> float:
    """``base_lr * factor`` before ``total_iters``, ``base_lr`` from then on."""
    return base_lr * (factor + (e >= total_iters) * (1 - factor))


# --- LinearLR ----------------------------------------------------------------


def linear_lr_recursive(
    lr: float, e: int, start_factor: float, end_factor: float, total_iters: int, initial: bool
) -> float:
    """Ratio of consecutive linear factors.

    ``f(e) = start + (end - start) * min(e, T) / T``; torch multiplies ``lr`` by
    ``f(e) / f(e - 1) = 1 + (end - start) / (T * start + (e - 1) * (end - start))``.
    """
    if e == 0:
        return lr * start_factor
    if initial or e > total_iters:
        return lr
    return lr * (
        1.0 + (end_factor - start_factor) / (total_iters * start_factor + (e - 1) * (end_factor - start_factor))
    )


def linear_lr_closed(base_lr: float, e: int, start_factor: float, end_factor: float, total_iters: int) -> float:
    """``base_lr * (start + (end - start) * min(T, e) / T)``."""
    return base_lr * (start_factor + (end_factor - start_factor) * min(total_iters, e) / total_iters)


# --- ExponentialLR -------------------------------------------------------------


def exponential_lr_recursive(lr: float, gamma: float, initial: bool) -> float:
    """``lr * gamma`` (unchanged on the initial step)."""
    if initial:
        return lr
    return lr * gamma


def exponential_lr_closed(base_lr: float, e: int, gamma: float) -> float:
    """``base_lr * gamma ** e``."""
    return base_lr * gamma**e


# --- PolynomialLR ------------------------------------------------------------


def polynomial_lr_recursive(lr: float, e: int, total_iters: int, power: float, initial: bool) -> float:
    """``lr * ((1 - e/T) / (1 - (e-1)/T)) ** power`` up to ``T``, then held."""
    if initial or e > total_iters:
        return lr
    decay_factor = ((1.0 - e / total_iters) / (1.0 - (e - 1) / total_iters)) ** power
    return lr * decay_factor


def polynomial_lr_closed(base_lr: float, e: int, total_iters: int, power: float) -> float:
    """``base_lr * (1 - min(T, e) / T) ** power``."""
    return base_lr * (1.0 - min(total_iters, e) / total_iters) ** power


# --- CosineAnnealingLR -------------------------------------------------------


def cosine_annealing_recursive(
    lrs: Iterable[float],
    base_lrs: Sequence[float],
    e: int,
    t_max: float,
    eta_min: float,
    initial: bool,
    step_count: int,
) -> list[float]:
    """torch's recursive cosine, for the current LRs of all param groups at once.

    Closed form: ``eta_min + (base_lr - eta_min) * (1 + cos(pi * e / T_max)) / 2``.
    The recursion multiplies ``lr - eta_min`` by the ratio of consecutive
    ``1 + cos`` terms, with a special case where that ratio is 0/0
    (``(e - 1 - T_max) % (2 T_max) == 0``). Not clamped: past ``T_max`` the LR rises again.
    The ratio does not depend on the group, so it is computed once per step (torch
    evaluates the same expression per group: the values are identical). ``lrs`` may be
    any iterable of numbers, so the caller need not build a list on the hot path.
    """
    if initial:
        return list(lrs)
    if step_count == 1 and e > 0:
        return [eta_min + (base_lr - eta_min) * (1 + math.cos(e * math.pi / t_max)) / 2 for base_lr in base_lrs]
    if (e - 1 - t_max) % (2 * t_max) == 0:
        return [lr + (base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2 for lr, base_lr in zip(lrs, base_lrs)]
    ratio = (1 + math.cos(math.pi * e / t_max)) / (1 + math.cos(math.pi * (e - 1) / t_max))
    return [ratio * (lr - eta_min) + eta_min for lr in lrs]


def cosine_annealing_closed(base_lr: float, e: float, t_max: float, eta_min: float) -> float:
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * e / T_max)) / 2``."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2


# --- CosineAnnealingWarmRestarts ---------------------------------------------


def warm_restarts_advance(t_cur: float, t_i: int, t_mult: int) -> tuple[float, int]:
    """One step of SGDR's clock: ``T_cur += 1``; at the end of a cycle wrap and grow ``T_i *= T_mult``."""
    t_cur = t_cur + 1
    if t_cur >= t_i:
        t_cur = t_cur % t_i
        t_i = t_i * t_mult
    return t_cur, t_i


def warm_restarts_at(epoch: float, t_0: int, t_mult: int) -> tuple[float, int]:
    """``(T_cur, T_i)`` at an explicit (possibly fractional) epoch, as torch's ``step(epoch)``."""
    if epoch >= t_0:
        if t_mult == 1:
            return epoch % t_0, t_0
        n = int(math.log(epoch / t_0 * (t_mult - 1) + 1, t_mult))
        return epoch - t_0 * (t_mult**n - 1) / (t_mult - 1), t_0 * t_mult**n
    return epoch, t_0


# --- CyclicLR ------------------------------------------------------------------


def cyclic_position(e: int, total_size: float, step_ratio: float) -> tuple[int, float]:
    """``(cycle, scale_factor)`` of CyclicLR: the triangle's height in [0, 1] at step ``e``."""
    cycle = math.floor(1 + e / total_size)
    x = 1.0 + e / total_size - cycle
    if x <= step_ratio:
        scale_factor = x / step_ratio
    else:
        scale_factor = (x - 1) / (step_ratio - 1)
    return cycle, scale_factor


def cyclic_scale(mode: str, gamma: float, x: float) -> float:
    """Amplitude scale: triangular ``1``, triangular2 ``1 / 2**(cycle-1)``, exp_range ``gamma**iterations``."""
    if mode == "triangular":
        return 1.0
    if mode == "triangular2":
        return 1 / 2.0 ** (x - 1)
    return gamma**x


# --- OneCycleLR ----------------------------------------------------------------


def anneal_cos(start: float, end: float, pct: float) -> float:
    """``end + (start - end) / 2 * (cos(pi * pct) + 1)``."""
    cos_out = math.cos(math.pi * pct) + 1
    return end + (start - end) / 2.0 * cos_out


def anneal_linear(start: float, end: float, pct: float) -> float:
    """``(end - start) * pct + start``."""
    return (end - start) * pct + start


def one_cycle_phase_ends(total_steps: int, pct_start: float, three_phase: bool) -> list[float]:
    """Last step of each phase: ``pct*T - 1``, (``2*pct*T - 2``,) ``T - 1``."""
    if three_phase:
        return [
            float(pct_start * total_steps) - 1,
            float(2 * pct_start * total_steps) - 2,
            total_steps - 1,
        ]
    return [float(pct_start * total_steps) - 1, total_steps - 1]


def one_cycle_locate(step: int, phase_ends: Sequence[float]) -> tuple[int, float]:
    """``(phase index, pct through that phase)`` for ``step``."""
    start_step = 0.0
    last = len(phase_ends) - 1
    for i, end_step in enumerate(phase_ends):
        if step <= end_step or i == last:
            return i, (step - start_step) / (end_step - start_step)
        start_step = end_step
    raise AssertionError("unreachable")


# --- SWALR (torch.optim.swa_utils) ---------------------------------------------


def swa_anneal(strategy: str, t: float) -> float:
    """Fraction of the way to ``swa_lr`` at ``t`` in [0, 1]: ``cos``: ``(1 - cos(pi t)) / 2``; ``linear``: ``t``."""
    if strategy == "cos":
        return (1 - math.cos(math.pi * t)) / 2
    return t


def swa_lr_recursive(lr: float, swa_lr: float, step_count: int, anneal_epochs: int, strategy: str) -> float:
    """torch's SWALR step: anneal from the LR the schedule started at toward ``swa_lr``.

    Closed form: ``lr_t = swa_lr * a(t) + lr_0 * (1 - a(t))`` with ``t = min(1, step / anneal_epochs)``
    and ``a`` the anneal function. torch recovers ``lr_0`` from the current LR each step,
    ``lr_0 = (lr - a(t_prev) * swa_lr) / (1 - a(t_prev))`` (``swa_lr`` once ``a(t_prev) == 1``), so the
    schedule follows whatever set the LR before it (typically another scheduler). ``step`` is
    ``step_count - 1`` (at least 1 when ``anneal_epochs == 0``).
    """
    step = step_count - 1
    if anneal_epochs == 0:
        step = max(1, step)
    prev_alpha = swa_anneal(strategy, max(0, min(1, (step - 1) / max(1, anneal_epochs))))
    start = swa_lr if prev_alpha == 1 else (lr - prev_alpha * swa_lr) / (1 - prev_alpha)
    alpha = swa_anneal(strategy, max(0, min(1, step / max(1, anneal_epochs))))
    return swa_lr * alpha + start * (1 - alpha)
