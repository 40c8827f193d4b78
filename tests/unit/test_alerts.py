"""Alerts' crossing rules (docs/billing-rules.md §19) as pure functions, and what an alert
request may be; hypothesis holds the rule equal to a plain computation of when each
threshold is first reached."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.alerts import (
    Crossing,
    Fired,
    Thresholds,
    crossed_between,
    decreasing,
    first_crossings,
    increasing,
    parse_alert,
)
from domain.validation import Invalid

D = Decimal


def th(*values: str, step: str | None = None) -> Thresholds:
    return Thresholds(tuple(D(v) for v in values), None if step is None else D(step))


def test_reaching_a_threshold_crosses_it() -> None:
    of = th("50", "100")
    assert increasing(D("49.99"), of, Fired()).count == 0
    assert increasing(D("50"), of, Fired()).fixed == (D("50"),)
    assert increasing(D("50"), of, Fired(frozenset({D("50")}))).count == 0


def test_one_evaluation_past_several_names_them_all_with_the_recurring_ones() -> None:
    of = th("50.00", "100.00", step="100.00")
    crossing = increasing(D("350"), of, Fired())
    assert crossing.thresholds(of) == [D("50.00"), D("100.00"), D("200.00"), D("300.00")]
    assert crossing.count == 4
    # then 400 fires the next recurring one only
    after = Fired(frozenset(crossing.fixed), crossing.recurring_to)
    assert increasing(D("400"), of, after).thresholds(of) == [D("400.00")]
    assert increasing(D("399.99"), of, after).count == 0


def test_a_huge_jump_lists_the_highest_and_counts_them_all() -> None:
    of = th("1", step="1")
    crossing = increasing(D("1000000"), of, Fired())
    assert crossing.count == 1_000_000
    listed = crossing.thresholds(of, limit=100)
    assert len(listed) == 100 and listed[-1] == D("1000000")


def test_crossed_between_is_the_plain_rule() -> None:
    of = th("10", "20", step="5")
    assert crossed_between(D("0"), D("31"), of) == [D("10"), D("20"), D("25"), D("30")]
    assert crossed_between(D("20"), D("24"), of) == []
    assert crossed_between(D("31"), D("5"), of) == []


def test_a_balance_fires_below_and_again_only_after_it_was_back_at_or_above() -> None:
    of = th("5.00", "20.00")
    new, rearmed = decreasing(D("19.99"), of, set())
    assert new == (D("20.00"),) and rearmed == ()
    assert decreasing(D("10"), of, {D("20.00")}) == ((), ())
    assert decreasing(D("4"), of, {D("20.00")}) == ((D("5.00"),), ())
    assert decreasing(D("20.00"), of, {D("20.00"), D("5.00")}) == ((), (D("5.00"), D("20.00")))


values = st.decimals(min_value=0, max_value=2000, places=2, allow_nan=False,
                     allow_infinity=False)


@st.composite
def alert_thresholds(draw: st.DrawFn) -> Thresholds:
    listed = sorted(set(draw(st.lists(st.decimals(min_value=D("0.01"), max_value=1000,
                                                  places=2), min_size=1, max_size=6))))
    step = draw(st.none() | st.decimals(min_value=D("0.5"), max_value=300, places=1))
    return Thresholds(tuple(listed), step)


@given(alert_thresholds(), st.lists(values, max_size=20))
def test_each_threshold_fires_once_when_first_reached(of: Thresholds,
                                                     series: list[Decimal]) -> None:
    """Evaluations of one period in any order of values (a ``max`` meter may go down):
    each threshold fires exactly once, at the first evaluation whose value reaches it."""
    top = max(series, default=D(0))
    every = list(of.values)
    n = 1
    while of.step is not None and of.last + of.step * n <= top:
        every.append(of.last + of.step * n)
        n += 1
    plain = {t: next(i for i, v in enumerate(series) if v >= t)
             for t in every if any(v >= t for v in series)}
    assert first_crossings(series, of) == plain
    fired = Fired()
    seen: list[Decimal] = []
    for v in series:
        crossing = increasing(v, of, fired)
        seen.extend(crossing.thresholds(of, limit=0))
        fired = Fired(fired.fixed | set(crossing.fixed), max(fired.recurring,
                                                             crossing.recurring_to))
    assert sorted(seen) == sorted(plain) and len(seen) == len(set(seen))


@given(alert_thresholds(), st.lists(values, max_size=20))
def test_a_rising_series_fires_what_it_crosses_between_evaluations(
        of: Thresholds, rises: list[Decimal]) -> None:
    series, total = [], D(0)
    for r in rises:
        total += r
        series.append(total)
    fired, previous = Fired(), D(0)
    for v in series:
        crossing = increasing(v, of, fired)
        assert crossing.thresholds(of, limit=0) == crossed_between(previous, v, of)
        fired = Fired(fired.fixed | set(crossing.fixed), max(fired.recurring,
                                                             crossing.recurring_to))
        previous = v


@given(st.lists(st.decimals(min_value=D("0.01"), max_value=100, places=2), min_size=1,
                max_size=4, unique=True),
       st.lists(st.decimals(min_value=-10, max_value=120, places=2), max_size=25))
def test_a_balance_alert_against_a_plain_armed_flag(listed: list[Decimal],
                                                    balances: list[Decimal]) -> None:
    of = Thresholds(tuple(sorted(listed)))
    armed = dict.fromkeys(of.values, True)
    below: set[Decimal] = set()
    for b in balances:
        expected = []
        for t in of.values:
            if armed[t] and b < t:
                expected.append(t)
                armed[t] = False
            elif b >= t:
                armed[t] = True
        new, rearmed = decreasing(b, of, below)
        assert list(new) == expected
        below = (below - set(rearmed)) | set(new)


def test_crossing_is_falsy_when_nothing_is_crossed() -> None:
    assert not Crossing()


GOOD = {"id": "a", "customer": "c", "kind": "usage_amount", "thresholds": ["50", "100"]}


@pytest.mark.parametrize(("change", "field"), [
    ({"thresholds": ["0"]}, "thresholds[0]"),
    ({"thresholds": ["-5"]}, "thresholds[0]"),
    ({"thresholds": ["50", "50"]}, "thresholds[1]"),
    ({"thresholds": ["50", "10"]}, "thresholds[1]"),
    ({"thresholds": []}, "thresholds"),
    ({"thresholds": "50"}, "thresholds"),
    ({"thresholds": ["abc"]}, "thresholds[0]"),
    ({"recurring_step": "0"}, "recurring_step"),
    ({"kind": "spend"}, "kind"),
    ({"kind": "usage_quantity"}, "meter"),
    ({"meter": "calls"}, "meter"),
    ({"kind": "credit_balance"}, "currency"),
    ({"kind": "credit_balance", "currency": "XYZ"}, "currency"),
    ({"kind": "credit_balance", "currency": "USD", "recurring_step": "5"}, "recurring_step"),
    ({"currency": "USD"}, "currency"),
    ({"id": ""}, "id"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_alert_input_names_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(Invalid) as raised:
        parse_alert({**GOOD, **change})
    assert raised.value.field == field


def test_an_alert_request() -> None:
    request = parse_alert({**GOOD, "recurring_step": "100.00", "subscription": "s"})
    assert request.thresholds == th("50", "100", step="100.00")
    assert request.subscription == "s"
