"""SequentialLR, ChainedScheduler and the function-driven schedulers (LambdaLR, MultiplicativeLR) at the edges that
the complete mutation run of ``torch_compat.py`` (session 10) found unpinned; torch 2.13 is the oracle wherever it
has the behaviour."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as torch_lr

import lrkit
from lrkit import StateError
from tests.conftest import lrs, round_trip, sgd


def sequential(lib: Any, optimizer: torch.optim.Optimizer, milestones: list[int], **kwargs: Any) -> Any:
    children = [lib.ConstantLR(optimizer, factor=0.5, total_iters=3), lib.ExponentialLR(optimizer, gamma=0.9)]
    return lib.SequentialLR(optimizer, children, milestones, **kwargs)


# ----------------------------------------------------------------------------- SequentialLR


def test_a_first_milestone_of_one_starts_the_first_scheduler_then_hands_over_as_torch():
    ours, theirs = sequential(lrkit, sgd(0.5), [1]), sequential(torch_lr, sgd(0.5), [1])
    for _ in range(5):
        assert lrs(ours.optimizer) == lrs(theirs.optimizer) and ours.get_last_lr() == theirs.get_last_lr()
        ours.optimizer.step(), theirs.optimizer.step()
        ours.step(), theirs.step()
    assert lrs(ours.optimizer) == lrs(theirs.optimizer)


@pytest.mark.parametrize("last_epoch", [-2, -5])
def test_a_sequential_last_epoch_below_minus_one_is_refused_by_name(last_epoch):
    with pytest.raises(ValueError, match=rf"^last_epoch must be an int >= -1, got last_epoch={last_epoch}$"):
        sequential(lrkit, sgd(0.5), [2], last_epoch=last_epoch)


def test_a_composites_base_lrs_are_the_groups_initial_lrs():
    """torch's composites have no ``base_lrs``; lrkit's LRScheduler protocol gives every scheduler one."""
    optimizer = sgd(0.5, torch.tensor(0.25))
    seq = sequential(lrkit, optimizer, [2])
    chain = lrkit.ChainedScheduler([lrkit.ExponentialLR(optimizer, gamma=0.9)])
    for composite in (seq, chain):
        assert [float(v) for v in composite.base_lrs] == [0.5, 0.25]
        assert composite.base_lrs[1] is not optimizer.param_groups[1]["initial_lr"]  # a copy of the Tensor
    optimizer = sgd(0.5)
    child = lrkit.ExponentialLR(optimizer, gamma=0.9)
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.125})  # no initial_lr
    chain = lrkit.ChainedScheduler([child])
    assert chain.base_lrs == [0.5, 0.125]  # a group added after the children: its LR


def test_a_leafs_state_may_hold_one_step_below_minus_one_per_construction_that_undid_it():
    """Each SequentialLR construction undoes the initial step of every leaf under it: a leaf two levels down, entered
    later by both, is saved at ``last_epoch`` -2, and a leaf's state check allows one step below -1 per undo."""
    optimizer = sgd(0.5)
    inner = sequential(lrkit, optimizer, [2])
    outer = lrkit.SequentialLR(optimizer, [lrkit.ConstantLR(optimizer, factor=0.5, total_iters=3), inner], [3])
    state = round_trip(outer)
    assert state["_schedulers"][1]["_schedulers"][1]["last_epoch"] == -2
    optimizer = sgd(0.5)
    again = lrkit.SequentialLR(
        optimizer, [lrkit.ConstantLR(optimizer, factor=0.5, total_iters=3), sequential(lrkit, optimizer, [2])], [3]
    )
    again.load_state_dict(state)  # -2 is a state this structure really saves
    single = round_trip(sequential(lrkit, sgd(0.5), [3]))
    assert single["_schedulers"][1]["last_epoch"] == -1
    single["_schedulers"][1]["last_epoch"] = -3
    with pytest.raises(
        StateError, match=r"^SequentialLR state\['_schedulers'\]\[1\]: .*last_epoch must be an int >= -2"
    ):
        sequential(lrkit, sgd(0.5), [3]).load_state_dict(single)


@pytest.mark.parametrize("composite", ["SequentialLR", "ChainedScheduler"])
def test_a_composite_step_refuses_an_epoch_by_name_as_torch_refuses_it(composite):
    optimizer = sgd(0.5)
    ours = (
        sequential(lrkit, optimizer, [2])
        if composite == "SequentialLR"
        else lrkit.ChainedScheduler([lrkit.ExponentialLR(optimizer, gamma=0.9)])
    )
    theirs = (
        sequential(torch_lr, sgd(0.5), [2])
        if composite == "SequentialLR"
        else torch_lr.ChainedScheduler([torch_lr.ExponentialLR(sgd(0.5), gamma=0.9)])
    )
    with pytest.raises(TypeError):
        theirs.step(3)
    with pytest.raises(TypeError, match=rf"^{composite}\.step\(\) takes no epoch argument$"):
        ours.step(3)


# ----------------------------------------------------------------------------- ChainedScheduler


def test_a_chain_counts_its_own_steps_from_zero_and_again_after_a_restart():
    """``last_epoch`` of a chain is lrkit's count of its steps (torch's chain keeps none): 0 at construction, one
    per step, and 0 again when a SequentialLR enters it at a milestone."""
    optimizer = sgd(0.5)
    chain = lrkit.ChainedScheduler([lrkit.ExponentialLR(optimizer, gamma=0.9), lrkit.StepLR(optimizer, 2)])
    assert chain.last_epoch == 0 and chain.state_dict()["last_epoch"] == 0
    for k in range(1, 4):
        optimizer.step()
        chain.step()
        assert chain.last_epoch == k
    optimizer = sgd(0.5)
    inner = lrkit.ChainedScheduler([lrkit.ExponentialLR(optimizer, gamma=0.9)])
    seq = lrkit.SequentialLR(optimizer, [lrkit.ConstantLR(optimizer, factor=0.5, total_iters=2), inner], [2])
    for _ in range(2):
        optimizer.step()
        seq.step()
    assert inner.last_epoch == 0  # entered at the milestone: restarted
    optimizer.step()
    seq.step()
    assert inner.last_epoch == 1


def test_a_bad_child_state_is_named_with_its_composite_and_index():
    seq = sequential(lrkit, sgd(0.5), [2])
    state = round_trip(seq)
    state["_schedulers"][1]["gamma"] = -1.0
    with pytest.raises(StateError, match=r"^SequentialLR state\['_schedulers'\]\[1\]: .*gamma"):
        sequential(lrkit, sgd(0.5), [2]).load_state_dict(state)


# ----------------------------------------------------------------------------- LambdaLR and MultiplicativeLR


class Halving:
    """A callable object: torch saves its attributes, and so does lrkit."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.table = [1, 2]

    def __call__(self, step: int) -> float:
        return self.rate**step


def test_a_function_scheduler_resumed_at_a_last_epoch_continues_as_torch():
    ours_opt, theirs_opt = sgd(0.5, 0.25), sgd(0.5, 0.25)
    for optimizer in (ours_opt, theirs_opt):
        for group in optimizer.param_groups:
            group["initial_lr"] = group["lr"]
    ours = lrkit.LambdaLR(ours_opt, lambda e: 0.9**e, last_epoch=3)
    theirs = torch_lr.LambdaLR(theirs_opt, lambda e: 0.9**e, last_epoch=3)
    assert ours.last_epoch == theirs.last_epoch == 4
    for _ in range(3):
        assert lrs(ours_opt) == lrs(theirs_opt)
        ours_opt.step(), theirs_opt.step()
        ours.step(), theirs.step()


def test_a_state_saved_without_lr_lambdas_loads_and_continues():
    """A state saved before lrkit kept the functions' attributes has no ``lr_lambdas``: it loads as all ``None``."""
    optimizer = sgd(0.5)
    saved = lrkit.LambdaLR(optimizer, lambda e: 0.5**e)
    for _ in range(3):
        optimizer.step()
        saved.step()
    state = round_trip(saved)
    del state["lr_lambdas"]
    resumed = lrkit.LambdaLR(sgd(0.5), lambda e: 0.5**e)
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 3 and resumed.get_last_lr() == saved.get_last_lr()
    resumed.optimizer.step(), saved.optimizer.step()
    resumed.step(), saved.step()
    assert resumed.get_last_lr() == saved.get_last_lr()


def function_state(entries: Any, fn: Any = None) -> tuple[Any, dict[str, Any]]:
    scheduler = lrkit.LambdaLR(sgd(0.5, 0.25), [fn or Halving(0.5), Halving(0.5)])
    state = round_trip(scheduler)
    state["lr_lambdas"] = entries
    return scheduler, state


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (5, "state['lr_lambdas'] must be a list with one entry per param group (2), got 5"),
        ([None], "state['lr_lambdas'] must be a list with one entry per param group (2), got [None]"),
        ([None, 5], "state['lr_lambdas'][1] must be None or a dict of attributes, got 5"),
        ([None, {1: 2}], "state['lr_lambdas'][1] must be None or a dict of attributes, got {1: 2}"),
        ([{"rate": 0.5}, "x"], "state['lr_lambdas'][1] must be None or a dict of attributes, got 'x'"),
    ],
)
def test_malformed_lr_lambdas_are_refused_naming_the_entry(entries, message):
    scheduler, state = function_state(entries)
    with pytest.raises(StateError, match="^" + re.escape(message) + "$"):
        scheduler._parse_state(state)


def test_attributes_saved_for_an_object_are_refused_for_a_plain_function():
    def plain(step: int) -> float:
        return 0.5**step

    scheduler, state = function_state([{"rate": 0.5}, None], fn=plain)
    message = (
        "state['lr_lambdas'][0] holds the attributes of a callable object, but this scheduler's lr_lambda[0] is "
        f"{plain!r}: rebuild it with the same kind of lr_lambda"
    )
    with pytest.raises(StateError, match="^" + re.escape(message) + "$"):
        scheduler.load_state_dict(state)


def test_loaded_attributes_are_copies_that_the_state_cannot_change_later():
    torch_fn, ours_fn = Halving(0.5), Halving(0.5)
    saved = lrkit.LambdaLR(sgd(0.5), Halving(0.25))
    state = round_trip(saved)
    theirs = torch_lr.LambdaLR(sgd(0.5), torch_fn)
    theirs.load_state_dict(torch_lr.LambdaLR(sgd(0.5), Halving(0.25)).state_dict())
    ours = lrkit.LambdaLR(sgd(0.5), ours_fn)
    ours.load_state_dict(state)
    assert vars(ours_fn) == vars(torch_fn) == {"rate": 0.25, "table": [1, 2]}
    state["lr_lambdas"][0]["table"].append(3)
    assert ours_fn.table == [1, 2]


def test_the_spec_lists_one_function_per_group_when_they_differ():
    first, second = Halving(0.5), Halving(0.9)
    assert lrkit.LambdaLR(sgd(0.5, 0.25), [first, second]).to_spec()["lr_lambda"] == [first, second]
    assert lrkit.LambdaLR(sgd(0.5, 0.25), first).to_spec()["lr_lambda"] is first


@pytest.mark.parametrize("kind", ["LambdaLR", "MultiplicativeLR"])
def test_a_lambda_returning_a_non_number_is_named_with_its_group(kind):
    def bad(step: int) -> Any:
        return "x"

    with pytest.raises(TypeError, match=r"^lr_lambda must return a finite number, got lr_lambda\[1\]\(\d+\)='x'"):
        scheduler = getattr(lrkit, kind)(sgd(0.5, 0.25), [lambda e: 1.0, bad])
        scheduler.optimizer.step()
        scheduler.step()
