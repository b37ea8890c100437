"""The rating run's batched path (billing.telecom.PlanRater) against the row-by-row
rule (version_at + rate_cdr): every field of every CDR the same, errors included, on
a mixed sample with allowances exhausted part-way through a call, a plan version
changing mid-month, calls starting in peak and ending off-peak, roaming, setup,
SMS, data and a daylight-saving change."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from billing.telecom import (
    AllowanceLedger,
    Cdr,
    PlanRater,
    PlanVersion,
    RatingError,
    band_of,
    band_table,
    parse_plan,
    rate_cdr,
    version_at,
)
from tests.unit.test_telecom_rating import plan_body

D = Decimal
SUBSCRIBERS = ("+447700900001", "+447700900002", "+447700900003")
UK = "+447700900123"
DESTINATIONS = ("+447700900123", "+44 20 7946 0000", "+33123456789", "+1555", "")


def versions() -> list[PlanVersion]:
    v1 = parse_plan(
        plan_body(
            allowances=[
                {"event_type": "voice", "quantity": "300", "zones": ["uk", "london"]},
                {"event_type": "data", "quantity": "2500000"},
            ]
        )
    )
    v2 = parse_plan(
        plan_body(
            effective_from="2026-03-15",
            bands=[
                {"name": "night", "days": [1, 2, 3, 4, 5, 6, 7], "from": "22:00", "to": "06:00"},
                {"name": "day", "days": [1, 2, 3, 4, 5, 6, 7], "from": "06:00", "to": "22:00"},
            ],
            rates=[
                {
                    "event_type": "voice",
                    "band": "night",
                    "unit_amount": "0.07",
                    "increment": "30/6",
                },
                {"event_type": "voice", "unit_amount": "0.90", "increment": "60/1"},
                {"zone": "france", "event_type": "voice", "unit_amount": "1.33"},
                {"event_type": "sms", "unit_amount": "0.04", "setup_amount": "0.01"},
                {"event_type": "data", "unit_amount": "1.10"},
            ],
            allowances=[{"event_type": "voice", "quantity": "600"}],
            roaming_uplift_percent="12.5",
        )
    )
    return [v1, v2]


def sample() -> list[Cdr]:
    rng = random.Random(7)
    start = datetime(2026, 2, 27, tzinfo=UTC)
    cdrs = []
    for n in range(3000):
        kind = rng.random()
        event_type, quantity = (
            ("voice", D(rng.choice([0, 1, 29, 30, 31, 59, 60, 61, 119, rng.randint(1, 1800)])))
            if kind < 0.7
            else ("sms", D(rng.randint(1, 3)))
            if kind < 0.85
            else ("data", D(rng.randint(0, 9_000_000)) / rng.choice([1, 1, 4]))
        )
        cdrs.append(
            Cdr(
                f"r{n:05d}",
                rng.choice(SUBSCRIBERS),
                event_type,
                start + timedelta(seconds=rng.randint(0, 40 * 86400)),
                quantity,
                rng.choice(DESTINATIONS),
                rng.random() < 0.1,
            )
        )
    sub = SUBSCRIBERS[0]
    cdrs += [
        # Peak at the start (17:59:30 in London), off-peak by its end: rated as peak.
        Cdr("peak-end", sub, "voice", datetime(2026, 3, 4, 17, 59, 30, tzinfo=UTC), D(600), UK),
        # Same second as another: the id breaks the tie.
        Cdr("tie-a", sub, "voice", datetime(2026, 3, 4, 17, 59, 30, tzinfo=UTC), D(61), UK),
        # Before the first version: unrateable; a whole-number quantity that is not.
        Cdr("early", sub, "voice", datetime(2025, 12, 31, 12, tzinfo=UTC), D(60)),
        Cdr("half", sub, "voice", datetime(2026, 3, 5, 12, tzinfo=UTC), D("60.5")),
    ]
    return cdrs


def in_order(cdrs: list[Cdr]) -> list[Cdr]:
    return sorted(cdrs, key=lambda c: (c.subscriber, c.start, c.id))


def row_by_row(plans: list[PlanVersion], cdrs: list[Cdr]) -> tuple[list[Any], list[Any]]:
    ledger, rated, errors = AllowanceLedger(), [], []
    for cdr in in_order(cdrs):
        try:
            r = rate_cdr(version_at(plans, cdr.start), cdr, ledger)
        except RatingError as exc:
            errors.append((cdr.id, exc.message))
            continue
        rated.append(
            (
                r.cdr.id,
                r.plan,
                r.version,
                r.zone,
                r.band,
                r.billed_quantity,
                r.included,
                r.amount,
                r.currency,
                r.day,
            )
        )
    return rated, errors


def batched(plans: list[PlanVersion], cdrs: list[Cdr]) -> tuple[list[Any], list[Any]]:
    rater, ledger = PlanRater(plans, lambda r: ("encoded", *r)), AllowanceLedger()
    rated: list[Any] = []
    errors: list[tuple[str, str]] = []
    months: list[tuple[str, date]] = []
    for sub in SUBSCRIBERS:
        rows = [
            (c.subscriber, c.id, c.event_type, c.start, c.quantity, c.destination, c.roaming)
            for c in in_order(cdrs)
            if c.subscriber == sub
        ]
        rated += [
            (cdr_id, *rating, day)
            for cdr_id, rating, encoded, day in rater.rate_many(
                ledger,
                sub,
                rows,
                lambda day: day.replace(day=1),
                lambda month, sub=sub: months.append((sub, month)),  # type: ignore[misc]
                errors,
            )
            # The encoding handed out is the encoding of the very rating.
            if encoded == ("encoded", *rating)
        ]
    assert len(months) == len(set(months))  # each period announced once
    return rated, errors


def test_the_batched_path_rates_exactly_as_row_by_row() -> None:
    plans, cdrs = versions(), sample()
    expected, expected_errors = row_by_row(plans, cdrs)
    got, errors = batched(plans, cdrs)
    assert got == expected
    assert sorted(errors) == sorted(expected_errors)
    # Same digits too (Decimal equality ignores trailing zeros).
    assert [tuple(map(str, r)) for r in got] == [tuple(map(str, r)) for r in expected]
    # The sample holds the cases it is meant to.
    by_id = {r[0]: r for r in got}
    assert any(D(0) < r[6] < r[5] for r in got)  # an allowance exhausted part-way
    assert {r[2] for r in got if r[9].month == 3} == {date(2026, 1, 1), date(2026, 3, 15)}
    assert by_id["peak-end"][4] == "peak"
    assert {r[4] for r in got} >= {"peak", "off_peak", "night", "day"}
    assert any(r[9] == date(2026, 3, 29) for r in got)  # the day London changes clock
    assert {e[0] for e in errors} >= {"early", "half"}
    assert any("no voice rate" in e[1] for e in errors)  # +1555 has no zone in v1


def test_the_band_table_is_band_of_for_every_minute() -> None:
    for plan in versions():
        table = band_table(plan)
        for minute in range(7 * 1440):
            # January 2024 in London is GMT; the 1st is a Monday; :59 s is still that minute.
            day, hour, at = 1 + minute // 1440, (minute % 1440) // 60, minute % 60
            moment = datetime(2024, 1, day, hour, at, 59, tzinfo=plan.tz)
            assert table[minute] == band_of(plan, moment), moment
