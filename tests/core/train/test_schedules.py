"""Learning-rate schedules against their closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from fdseg_core.train.schedules import build_scheduler

TOTAL = 10


def _lrs(kind: str, steps: int = TOTAL + 3) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched = build_scheduler(opt, kind, TOTAL)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize(
    ("kind", "closed_form"),
    [
        ("poly", lambda s: 0.5 * (1 - min(s, TOTAL) / TOTAL) ** 0.9),
        ("cosine", lambda s: 0.25 * (1 + math.cos(math.pi * min(s, TOTAL) / TOTAL))),
        ("constant", lambda s: 0.5),
    ],
)
def test_each_schedule_follows_its_closed_form_and_holds_after_the_last_step(kind, closed_form):
    lrs = _lrs(kind)
    assert lrs == pytest.approx([closed_form(s) for s in range(len(lrs))], abs=1e-12)
    assert lrs[0] == 0.5
    if kind != "constant":
        assert lrs[TOTAL:] == [0.0] * 3  # clamped at the end of the run, never negative


def test_the_schedule_resumes_from_its_state_dict():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched = build_scheduler(opt, "poly", TOTAL)
    for _ in range(4):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched2 = build_scheduler(opt2, "poly", TOTAL)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * (1 - 5 / TOTAL) ** 0.9)


def test_bad_arguments_name_the_value():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        build_scheduler(opt, "step", TOTAL)
    with pytest.raises(ValueError, match="total_steps must be >= 1, got 0"):
        build_scheduler(opt, "poly", 0)
