"""MSP pure rules: rounding per entry, rate resolution, retainer draw and close."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing.errors import InvalidBillingRequest
from billing.msp import (
    RateSources,
    RoundingRule,
    close_retainer_period,
    draw_down,
    entry_amount,
    hours_text,
    is_after_hours,
    parse_terms,
    prorated_units,
    resolve_rate,
    round_minutes,
)


def test_37_minutes_at_15_minute_increments_rounded_up_is_three_quarters_of_an_hour() -> None:
    rounded = round_minutes(37, RoundingRule(15, "up"))
    assert rounded == 45 and hours_text(rounded) == "0.75"
    assert entry_amount(rounded, Decimal("150.00"), "USD").amount == Decimal("112.50")


def test_nearest_rounds_a_half_up_and_down_below_it() -> None:
    assert round_minutes(37, RoundingRule(15, "nearest")) == 30
    assert round_minutes(38, RoundingRule(15, "nearest")) == 45  # 37.5 is the half
    assert round_minutes(3, RoundingRule(6, "nearest")) == 6
    assert round_minutes(2, RoundingRule(6, "nearest")) == 0


def test_minimum_charge_lifts_a_short_entry() -> None:
    rule = RoundingRule(15, "up", minimum_minutes=60)
    assert round_minutes(5, rule) == 60
    assert entry_amount(60, Decimal("125.00"), "USD").amount == Decimal("125.00")
    assert round_minutes(0, rule) == 0  # nothing worked, nothing charged
    assert round_minutes(61, rule) == 75


def test_negative_minutes_and_odd_increments_are_refused() -> None:
    with pytest.raises(InvalidBillingRequest):
        round_minutes(-5, RoundingRule())
    with pytest.raises(InvalidBillingRequest):
        RoundingRule(10, "up")
    with pytest.raises(InvalidBillingRequest):
        RoundingRule(15, "down")


def test_after_hours_from_clock_times_against_business_hours_else_the_flag() -> None:
    window = parse_terms(
        "time_and_materials",
        {"hourly_rate": "100", "business_hours": {"start": "08:00", "end": "18:00"}},
    ).business_hours
    assert window == (480, 1080)
    assert is_after_hours(17 * 60, 18 * 60, window, True) is False  # ends at the close
    assert is_after_hours(17 * 60, 18 * 60 + 1, window, False) is True
    assert is_after_hours(7 * 60 + 59, 9 * 60, window, False) is True
    assert is_after_hours(None, None, window, True) is True  # minutes only: the flag
    assert is_after_hours(20 * 60, 21 * 60, None, False) is False  # no window: the flag


def test_after_hours_multiplier_and_one_rounding_per_entry() -> None:
    # 20 minutes at 100.00 × 1.5 = 50.00; 7 minutes at 100.00 = 11.666… → 11.67.
    assert entry_amount(20, Decimal("100.00"), "USD", Decimal("1.5")).amount == Decimal("50.00")
    assert entry_amount(7, Decimal("100.00"), "USD").amount == Decimal("11.67")


def test_rate_resolution_contract_then_role_then_default() -> None:
    sources = RateSources(
        contract_roles={"engineer": Decimal("140")},
        contract_rate=None,
        client_roles={"engineer": Decimal("130"), "pm": Decimal("160")},
        book_roles={"engineer": Decimal("120"), "senior": Decimal("180")},
        book_default=Decimal("100"),
    )
    assert resolve_rate("engineer", sources) == (Decimal("140"), "contract_role")
    assert resolve_rate("pm", sources) == (Decimal("160"), "client_role")
    assert resolve_rate("senior", sources) == (Decimal("180"), "role")
    assert resolve_rate("intern", sources) == (Decimal("100"), "default")
    with pytest.raises(InvalidBillingRequest):
        resolve_rate("intern", RateSources())


def test_retainer_draw_and_close_the_issue_case() -> None:
    # 20 h included, 23.5 h approved: 20 drawn, 3.5 overage.
    assert draw_down(23 * 60 + 30, 20 * 60) == draw_down(1410, 1200)
    draw = draw_down(1410, 1200)
    assert (draw.drawn_minutes, draw.overage_minutes) == (1200, 210)
    # Next month 12 h used, carry over up to 5 h: 8 unused, 5 carried, 3 expired.
    close = close_retainer_period(1200, 0, 720, "carry_over", 300)
    assert (close.unused_minutes, close.carried_minutes, close.expired_minutes) == (480, 300, 180)
    assert close_retainer_period(1200, 0, 720, "expire", 300).expired_minutes == 480


def test_device_counts_at_cut_off_or_day_by_day() -> None:
    counts = [(date(2026, 9, 1), 40), (date(2026, 9, 16), 47)]
    start, end = date(2026, 9, 1), date(2026, 10, 1)
    assert prorated_units(counts, start, end, "none") == (47 * 30, 30, 47)
    assert prorated_units(counts, start, end, "daily") == (40 * 15 + 47 * 15, 30, 47)


def test_contract_terms_are_checked_against_the_type() -> None:
    with pytest.raises(InvalidBillingRequest):
        parse_terms("retainer", {"hourly_rate": "150"})  # no included_hours
    with pytest.raises(InvalidBillingRequest):
        parse_terms("fixed_fee", {})
    with pytest.raises(InvalidBillingRequest):
        parse_terms("managed_services", {"monthly_fee": "100"})
    with pytest.raises(InvalidBillingRequest):
        parse_terms("time_and_materials", {"hourly_rate": "-1"})
    terms = parse_terms(
        "retainer", {"included_hours": "20", "hourly_rate": "150.00", "overage_rate": "175.00"}
    )
    assert terms.retainer_fee == Decimal("3000.00") and terms.hourly_value() == Decimal("150")


def test_utilization_is_billable_over_available_hours() -> None:
    from billing.msp import utilization, working_days

    assert working_days(date(2026, 9, 1), date(2026, 10, 1)) == 22
    assert working_days(date(2026, 9, 5), date(2026, 9, 7)) == 0  # a weekend
    rows = [("Dana", "billable", 600), ("Dana", "no_charge", 60), ("Lee", "do_not_bill", 120)]
    found = {u.person: u for u in utilization(rows, 22 * 8 * 60)}
    assert (found["Dana"].billable_minutes, found["Dana"].non_billable_minutes) == (600, 60)
    assert found["Dana"].utilization == Decimal("0.0568")  # 10 h of 176 h
    assert found["Lee"].utilization == Decimal("0.0000")
