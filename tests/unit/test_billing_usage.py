"""Usage rules (billing.usage): events a book accepts, meters, rating in arrears."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing.errors import InvalidBillingRequest
from billing.periods import Interval, Period
from billing.postgres.usage_billing import previous_period
from billing.rating import GraduatedCharge, PackageCharge, PerUnitCharge, Tier, VolumeCharge
from billing.subscriptions import Plan
from billing.usage import (
    Aggregation,
    Event,
    Rejection,
    UsageTerms,
    check_meter,
    late_amount,
    parse_event,
    rate_usage,
    tier_breakdown,
    usage_lines,
)
from ledger.money import Money

D = Decimal
TIERS = (Tier(1000, D("0.10")), Tier(10000, D("0.05")), Tier(None, D("0.01")))
MARCH = Period(date(2026, 3, 1), date(2026, 4, 1))
TODAY = date(2026, 3, 15)
FIRST = date(2016, 3, 15)


def _event(**kw: object) -> dict[str, object]:
    return {
        "id": "e1",
        "customer": "crm-1",
        "metric": "api_calls",
        "quantity": "2.5",
        "timestamp": "2026-03-10T12:00:00+02:00",
        **kw,
    }


def _reason(raw: object) -> str:
    parsed = parse_event(raw, FIRST, TODAY)
    assert isinstance(parsed, Rejection)
    return parsed.reason


def test_graduated_15000_units_cost_600_and_volume_150() -> None:
    graduated = UsageTerms(GraduatedCharge("USD", TIERS))
    volume = UsageTerms(VolumeCharge("USD", TIERS))
    [g], none = rate_usage(graduated, [({}, D(15000))])
    [v], _ = rate_usage(volume, [({}, D(15000))])
    assert (g.amount, v.amount, none) == (Money("600.00", "USD"), Money("150.00", "USD"), None)
    assert g.breakdown == "1–1000 @ 0.10; 1001–10000 @ 0.05; 10001–15000 @ 0.01"
    assert v.breakdown == "all 15000 @ 0.01"


def test_free_units_are_taken_first_in_group_order() -> None:
    terms = UsageTerms(PerUnitCharge("USD", D("0.50")), free_units=D(10))
    rated, _ = rate_usage(terms, [({"region": "eu"}, D(4)), ({"region": "us"}, D(20))])
    assert [(r.billable, r.amount) for r in rated] == [
        (D(0), Money("0.00", "USD")),
        (D(14), Money("7.00", "USD")),
    ]
    lines = usage_lines("API", terms, MARCH, rated, None)
    assert [(x.description, x.quantity, x.unit_amount, x.amount) for x in lines] == [
        (
            "API — 14 units (region=us), 6 free, [2026-03-01, 2026-04-01)",
            D(14),
            D("0.50"),
            Money("7.00", "USD"),
        )
    ]


def test_no_usage_bills_nothing_not_even_a_package_or_a_tier_flat_amount() -> None:
    for charge in (
        PackageCharge("USD", D("10.00"), 100),
        GraduatedCharge("USD", (Tier(10, D(0), D("5.00")), Tier(None, D("1.00")))),
    ):
        rated, shortfall = rate_usage(UsageTerms(charge), [({}, D(0))])
        assert rated[0].amount == Money("0.00", "USD") and shortfall is None
        assert usage_lines("X", UsageTerms(charge), MARCH, rated, shortfall) == []


def test_a_minimum_commitment_bills_its_shortfall_as_its_own_line() -> None:
    terms = UsageTerms(PerUnitCharge("USD", D("1.00")), minimum=D("50.00"))
    rated, shortfall = rate_usage(terms, [({}, D(30))])
    assert shortfall == Money("20.00", "USD")
    lines = usage_lines("API", terms, MARCH, rated, shortfall)
    assert [x.amount for x in lines] == [Money("30.00", "USD"), Money("20.00", "USD")]
    assert "minimum commitment" in lines[1].description
    _, none = rate_usage(terms, [({}, D(60))])
    assert none is None
    _, all_of_it = rate_usage(terms, [({}, D(0))])
    assert all_of_it == Money("50.00", "USD")


def test_late_usage_bills_the_whole_period_rated_again_less_what_was_billed() -> None:
    terms = UsageTerms(GraduatedCharge("USD", TIERS))
    rated, shortfall = rate_usage(terms, [({}, D(16000))])
    assert late_amount(rated, shortfall, D("600.00")) == D("10.00")  # 1,000 more at 0.01


def test_tier_breakdown_of_a_quantity_inside_the_first_tier() -> None:
    assert tier_breakdown(GraduatedCharge("USD", TIERS), D(500)) == ["1–500 @ 0.10"]
    assert tier_breakdown(GraduatedCharge("USD", TIERS), D(0)) == []


def test_an_event_parses_with_its_offset() -> None:
    parsed = parse_event(_event(properties={"region": "eu"}), FIRST, TODAY)
    assert isinstance(parsed, Event)
    assert (parsed.quantity, parsed.occurred_at.utcoffset() is not None) == (D("2.5"), True)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"quantity": "-1"}, "invalid_quantity"),
        ({"quantity": "abc"}, "invalid_quantity"),
        ({"quantity": "NaN"}, "invalid_quantity"),
        ({"quantity": 1.5}, "invalid_quantity"),
        ({"quantity": True}, "invalid_quantity"),
        ({"timestamp": "2026-03-10"}, "invalid_timestamp"),
        ({"timestamp": "yesterday"}, "invalid_timestamp"),
        ({"timestamp": "2026-03-17T00:00:01Z"}, "timestamp_in_future"),
        ({"timestamp": "2000-01-01T00:00:00Z"}, "timestamp_not_accepted"),
        ({"id": ""}, "invalid_event"),
        ({"id": 5}, "invalid_event"),
        ({"metric": "has space"}, "invalid_event"),
        ({"properties": [1]}, "invalid_event"),
        ({"extra": 1}, "invalid_event"),
    ],
)
def test_bad_events_are_refused_with_a_reason(change: dict[str, object], reason: str) -> None:
    assert _reason(_event(**change)) == reason


def test_the_future_tolerance_is_one_day_past_the_end_of_today() -> None:
    assert isinstance(parse_event(_event(timestamp="2026-03-17T00:00:00Z"), FIRST, TODAY), Event)


def test_meters_check_their_aggregation_property_filters_and_groups() -> None:
    meter = check_meter("calls", "unique_count", "user", {"region": ["eu", 1]}, ["plan"])
    assert (meter.aggregation, meter.filters, meter.group_by) == (
        Aggregation.UNIQUE_COUNT,
        {"region": ("eu", "1")},
        ("plan",),
    )
    for args in (
        ("calls", "average"),
        ("calls", "unique_count"),
        ("", "sum"),
        ("calls", "sum", None, {"region": []}),
        ("calls", "sum", None, {"region": 1.5}),
        ("calls", "sum", None, None, ["a", "a"]),
    ):
        with pytest.raises(InvalidBillingRequest):
            check_meter(*args)


def test_the_period_just_ended_is_cut_at_the_start_or_trial_end() -> None:
    plan = Plan(date(2026, 1, 15), Interval.MONTH)
    feb = Period(date(2026, 2, 15), date(2026, 3, 15))
    assert previous_period(plan, date(2026, 1, 15), feb) == Period(
        date(2026, 1, 15), date(2026, 2, 15)
    )
    assert previous_period(plan, date(2026, 1, 20), feb) == Period(
        date(2026, 1, 20), date(2026, 2, 15)
    )
    assert previous_period(plan, date(2026, 2, 15), feb) is None
