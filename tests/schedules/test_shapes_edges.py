"""More schedule edges that the complete mutation run of ``shapes.py`` (session 10) found unpinned: a floor of
exactly 1.0, exponential decays between small LRs, the LR range test's ramp, the default phases of a
user-defined schedule, a :class:`Sequence`'s normalised fields and the jumps of a piece that is cut short, and
the restarts of transformers' hard-restart cosine where its factor is flat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from lrkit import schedules as S

SHAPES = ["linear", "cosine", "1-sqrt"]


@pytest.mark.parametrize("shape", SHAPES)
def test_a_decay_to_a_floor_of_exactly_one_ends_on_it(shape):
    """``high * c + low * (1 - c)`` ends exactly on ``low`` for any ``low``, 1.0 included (not ``high * c``)."""
    decay = S.Decay(start_lr=3.0, decay_steps=10, min_lr=1.0, decay_shape=shape)
    assert decay(0) == 3.0 and decay(10) == 1.0 and decay(25) == 1.0
    assert decay(np.asarray([0, 10, 25])).tolist() == [3.0, 1.0, 1.0]
    assert all(1.0 < decay(t) < 3.0 for t in range(1, 10))


def test_an_exponential_decay_between_small_lrs_is_geometric():
    """Exponential needs both ends above 0, not above 1: 1e-3 to 1e-5 in 10 steps is ``np.geomspace``."""
    decay = S.Decay(start_lr=1e-3, decay_steps=10, min_lr=1e-5, decay_shape="exponential")
    values = decay(np.arange(12))
    np.testing.assert_allclose(values[:11], np.geomspace(1e-3, 1e-5, 11), rtol=1e-13, atol=0)
    assert values[0] == 1e-3 and values[10] == 1e-5 and values[11] == 1e-5
    with pytest.raises(ValueError, match=r"^decay_shape='exponential' needs start_lr > 0 and min_lr > 0, got "):
        S.Decay(start_lr=1e-3, decay_steps=10, min_lr=0.0, decay_shape="exponential")


@pytest.mark.parametrize(("start", "end", "n"), [(1e-7, 10.0, 100), (1.0, 1e-6, 7), (0.5, 0.5, 2)])
def test_the_lr_range_tests_ramp_is_geomspace_then_held(start, end, n):
    ramp = S.ExponentialRamp(start, end, n)
    steps = np.arange(n + 5)
    values = ramp(steps)
    np.testing.assert_allclose(values[:n], np.geomspace(start, end, n), rtol=1e-13, atol=0)
    assert values[0] == start and values[n - 1] == end and set(values[n:].tolist()) == {end}
    # The scalar path (math's pow) may differ from numpy's by an ulp: both are held to geomspace.
    np.testing.assert_allclose([ramp(int(t)) for t in steps], values, rtol=1e-13, atol=0)
    assert ramp.phases() == [S.Phase("exponential ramp", 0), S.Phase("constant", n - 1)]
    assert ramp.end() == (n - 1, end)


def test_a_user_defined_schedule_has_one_phase_named_after_its_class():
    class Halves(S.Schedule):
        def _value(self, t: Any, xp: Any) -> Any:
            return 0.5 + 0.0 * t

    halves = Halves()
    assert halves.phases() == [S.Phase("Halves", 0)] and halves.phases(10) == [S.Phase("Halves", 0)]
    assert halves.jumps() == [] and halves.peak() is None and halves.end() is None
    assert halves(3) == 0.5 and halves(np.arange(3)).tolist() == [0.5, 0.5, 0.5]


def test_a_sequence_keeps_its_fields_as_tuples_of_ints_however_they_were_given():
    a, b = S.Constant(1.0), S.Constant(0.5)
    from_lists = S.Sequence([a, b], [np.int64(5)])
    from_tuples = S.Sequence((a, b), (5,))
    assert from_lists.schedules == (a, b) and type(from_lists.schedules) is tuple
    assert from_lists.boundaries == (5,) and type(from_lists.boundaries) is tuple
    assert type(from_lists.boundaries[0]) is int
    assert from_lists == from_tuples and hash(from_lists) == hash(from_tuples)


@pytest.mark.parametrize(
    "schedules",
    [S.Constant(1.0), (s for s in (S.Constant(1.0), S.Constant(0.5))), "ab"],
    ids=["one-schedule", "a-generator", "a-string"],
)
def test_a_sequence_of_anything_but_a_list_or_tuple_of_schedules_is_refused_by_name(schedules):
    with pytest.raises(TypeError, match=r"^schedules must be a non-empty list of Schedule, got schedules="):
        S.Sequence(schedules, [5])


def hard_restarts(w: int, total: int, cycles: float) -> tuple[S.HFCosineWithHardRestartsFactor, Callable]:
    """lrkit's factor and transformers' own lambda (the oracle) for the same arguments."""
    transformers = pytest.importorskip("transformers")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    hf = transformers.get_cosine_with_hard_restarts_schedule_with_warmup(optimizer, w, total, cycles)
    return S.HFCosineWithHardRestartsFactor(w, total, cycles), hf.lr_lambdas[0]


@pytest.mark.parametrize(
    ("w", "total", "cycles"), [(0, 40, 4), (3, 23, 2), (2, 50, 1e-12), (0, 30, 1e-12), (5, 6, 3), (0, 10, 2.5)]
)
def test_the_hard_restarts_are_where_transformers_factor_rises(w, total, cycles):
    """A restart is a step whose factor is above the one before; a flat factor (a tiny ``num_cycles``) has none."""
    factor, oracle = hard_restarts(w, total, cycles)
    rises = [t for t in range(w + 1, total) if oracle(t) > oracle(t - 1)]  # after the warmup
    assert factor.jumps() == rises
    if cycles == 1e-12:
        assert rises == [] and {oracle(t) for t in range(w, total)} == {1.0}


def test_a_sequence_drops_the_jumps_of_a_piece_that_fall_after_the_piece_is_cut():
    """A piece declares its own restarts; those at or after its end (its span in the sequence) are not the
    sequence's. Restarts at local 10, 20 and 30 in a piece spanning local 0..20 leave only global 10 + 10."""
    restarts, _ = hard_restarts(0, 40, 4)
    assert restarts.jumps() == [10, 20, 30]
    seq = S.Sequence([S.Constant(1.0), restarts, S.Constant(0.0)], [10, 30])
    assert seq.jumps() == [20]
    assert seq.jumps(until=31) == [20] and seq.jumps(until=20) == [] and seq.jumps(until=21) == [20]
    last = S.Sequence([S.Constant(1.0), restarts], [10])  # the last piece runs on: every restart is kept
    assert last.jumps() == [20, 30, 40]
