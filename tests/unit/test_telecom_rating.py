"""Golden telecom rating cases (issue 9): increments, bands by start time,
longest prefix, plan versions by start, allowances split part-way, roaming,
setup, data per started unit, and plans/CDRs refused with the field named."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from billing.telecom import (
    AllowanceLedger,
    Cdr,
    RatingError,
    parse_cdr,
    parse_increment,
    parse_plan,
    rate_cdr,
    rate_cdrs,
)

D = Decimal


def plan_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Mobile S",
        "effective_from": "2026-01-01",
        "currency": "GBP",
        "time_zone": "Europe/London",
        "bands": [
            {"name": "peak", "days": [1, 2, 3, 4, 5], "from": "08:00", "to": "18:00"},
            {"name": "off_peak", "days": [1, 2, 3, 4, 5, 6, 7], "from": "00:00", "to": "24:00"},
        ],
        "zones": [
            {"name": "uk", "prefix": "+44"},
            {"name": "london", "prefix": "+4420"},
            {"name": "france", "prefix": "+33"},
        ],
        "rates": [
            {
                "zone": "uk",
                "event_type": "voice",
                "band": "peak",
                "unit_amount": "0.60",
                "increment": "60/60",
            },
            {
                "zone": "uk",
                "event_type": "voice",
                "band": "off_peak",
                "unit_amount": "0.30",
                "increment": "60/60",
            },
            {"zone": "london", "event_type": "voice", "unit_amount": "0.12", "increment": "60/1"},
            {
                "zone": "france",
                "event_type": "voice",
                "unit_amount": "1.20",
                "increment": "30/6",
                "setup_amount": "0.10",
            },
            {"event_type": "sms", "unit_amount": "0.05"},
            {"event_type": "data", "unit_amount": "2.00", "increment": "1000000/1000000"},
        ],
        "allowances": [],
        "roaming_uplift_percent": "50",
    }
    body.update(overrides)
    return body


def call(start: str, seconds: int, to: str = "+447700900123", cid: str = "c1", **kw: Any) -> Cdr:
    return Cdr(cid, "+447700900001", "voice", datetime.fromisoformat(start), D(seconds), to, **kw)


PLAN = parse_plan(plan_body())


def one(cdr: Cdr) -> Any:
    return rate_cdr(PLAN, cdr, AllowanceLedger())


def test_61_seconds_at_60_60_is_120_and_at_60_1_is_61() -> None:
    at_60_60 = one(call("2026-03-02T10:00:00+00:00", 61))  # Monday peak, uk
    assert (at_60_60.zone, at_60_60.band) == ("uk", "peak")
    assert (at_60_60.billed_quantity, at_60_60.amount) == (D(120), D("1.20"))
    at_60_1 = one(call("2026-03-02T10:00:00+00:00", 61, to="+44 20 7946 0000"))
    assert at_60_1.zone == "london"  # the longer prefix wins over +44
    assert (at_60_1.billed_quantity, at_60_1.amount) == (D(61), D("0.12"))  # 0.122 → 0.12


def test_increments() -> None:
    assert parse_increment("30/6").billed(D(61)) == D(66)
    assert parse_increment("30/6").billed(D(12)) == D(30)
    assert parse_increment("60/60").billed(D(60)) == D(60)
    assert parse_increment("60/60").billed(D(0)) == D(0)
    assert parse_increment("1000/1000").billed(D(1001)) == D(2000)


def test_call_starting_in_peak_ending_off_peak_is_rated_by_its_start() -> None:
    # 17:59 London (GMT in March before the clocks change), 10 minutes long.
    rated = one(call("2026-03-02T17:59:00+00:00", 600))
    assert (rated.band, rated.amount) == ("peak", D("6.00"))
    later = one(call("2026-03-02T18:00:00+00:00", 600))
    assert (later.band, later.amount) == ("off_peak", D("3.00"))
    # The band is read in the plan's time zone: 08:30 BST is 07:30 UTC.
    summer = one(call("2026-06-01T07:30:00+00:00", 60))
    assert summer.band == "peak"
    weekend = one(call("2026-03-07T10:00:00+00:00", 60))  # Saturday
    assert weekend.band == "off_peak"


def test_setup_roaming_sms_and_data() -> None:
    france = one(call("2026-03-02T10:00:00+00:00", 61, to="+33 1 23 45 67 89"))
    # 30/6: 66 s at 1.20/min = 1.32, + setup 0.10
    assert (france.billed_quantity, france.amount) == (D(66), D("1.42"))
    roaming = one(call("2026-03-02T10:00:00+00:00", 61, to="+33123456789", roaming=True))
    assert roaming.amount == D("2.13")  # 1.42 × 1.5
    sms = one(
        Cdr(
            "s1",
            "+447700900001",
            "sms",
            datetime.fromisoformat("2026-03-02T10:00:00+00:00"),
            D(3),
            "+447700900123",
        )
    )
    assert (sms.billed_quantity, sms.amount) == (D(3), D("0.15"))
    data = one(
        Cdr(
            "d1",
            "+447700900001",
            "data",
            datetime.fromisoformat("2026-03-02T10:00:00+00:00"),
            D(1_000_001),
            "",
        )
    )
    assert (data.billed_quantity, data.amount) == (D(2_000_000), D("4.00"))


def test_plan_version_change_mid_month() -> None:
    v1 = PLAN
    v2 = parse_plan(
        plan_body(
            effective_from="2026-03-15",
            rates=[{"event_type": "voice", "unit_amount": "0.90", "increment": "60/60"}],
        )
    )
    rated = rate_cdrs(
        [v2, v1],
        [
            call("2026-03-16T10:00:00+00:00", 60, cid="b"),
            call("2026-03-13T10:00:00+00:00", 60, cid="a"),
        ],
    )
    assert [(r.cdr.id, r.version.isoformat(), r.amount) for r in rated] == [
        ("a", "2026-01-01", D("0.60")),
        ("b", "2026-03-15", D("0.90")),
    ]
    # In force by the start's LOCAL date: 23:30 UTC on the 14th is still the 14th in London.
    edge = rate_cdrs([v1, v2], [call("2026-03-14T23:30:00+00:00", 60)])
    assert edge[0].version.isoformat() == "2026-01-01"


def test_allowance_exhausted_part_way_through_a_call() -> None:
    plan = parse_plan(plan_body(allowances=[{"event_type": "voice", "quantity": "300"}]))
    rated = rate_cdrs(
        [plan],
        [
            call("2026-03-02T10:05:00+00:00", 240, cid="second"),  # 4 min, 60 left
            call("2026-03-02T10:00:00+00:00", 120, cid="first"),  # 2 min, all included
            call("2026-03-02T10:10:00+00:00", 60, cid="third"),
            call("2026-04-01T10:00:00+00:00", 60, cid="april"),  # a new month, a new allowance
        ],
    )
    got = [(r.cdr.id, r.billed_quantity, r.included, r.amount) for r in rated]
    assert got == [
        ("first", D(120), D(120), D("0.00")),
        ("second", D(240), D(180), D("0.60")),  # 180 s free, 60 s billed at 0.60/min
        ("third", D(60), D(0), D("0.60")),
        ("april", D(60), D(60), D("0.00")),
    ]


def test_a_version_change_mid_month_keeps_what_the_month_used_of_its_allowance() -> None:
    """The allowance belongs to the month, not the version: a new version's allowance less
    what the month already used (bigger: the rest is free; smaller: nothing is left)."""
    v1 = parse_plan(plan_body(allowances=[{"event_type": "voice", "quantity": "300"}]))

    def v2(quantity: str) -> Any:
        return parse_plan(
            plan_body(
                effective_from="2026-03-15",
                rates=[{"event_type": "voice", "unit_amount": "0.90", "increment": "60/60"}],
                allowances=[{"event_type": "voice", "quantity": quantity}],
            )
        )

    calls = [
        call("2026-03-10T10:00:00+00:00", 240, cid="before"),  # v1: 240 of 300 used
        call("2026-03-16T10:00:00+00:00", 480, cid="after"),
    ]
    bigger = rate_cdrs([v1, v2("600")], calls)
    assert [(r.cdr.id, r.included, r.amount) for r in bigger] == [
        ("before", D(240), D("0.00")),
        ("after", D(360), D("1.80")),  # 600 - 240 = 360 s free, 120 s at 0.90/min
    ]
    smaller = rate_cdrs([v1, v2("120")], calls)
    assert [(r.cdr.id, r.included, r.amount) for r in smaller] == [
        ("before", D(240), D("0.00")),
        ("after", D(0), D("7.20")),  # 240 already used of 120: all 8 minutes billed
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"currency": "XXX1"}, "currency"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"effective_from": "soon"}, "effective_from"),
        ({"bands": [{"name": "b", "days": [0], "from": "08:00", "to": "18:00"}]}, "bands[0]"),
        ({"bands": [{"name": "b", "days": [1], "from": "8", "to": "18:00"}]}, "bands[0].from"),
        ({"rates": []}, "rates"),
        ({"rates": [{"event_type": "fax", "unit_amount": "1"}]}, "rates[0].event_type"),
        ({"rates": [{"event_type": "voice", "unit_amount": "-1"}]}, "rates[0].unit_amount"),
        ({"rates": [{"event_type": "voice", "unit_amount": "x"}]}, "rates[0].unit_amount"),
        (
            {"rates": [{"event_type": "voice", "unit_amount": "1", "increment": "0/60"}]},
            "increment",
        ),
        ({"rates": [{"event_type": "voice", "unit_amount": "1", "zone": "mars"}]}, "rates[0].zone"),
        ({"allowances": [{"event_type": "voice", "quantity": "-5"}]}, "allowances[0].quantity"),
    ],
)
def test_bad_plans_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(RatingError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_plan(plan_body(**change))


def test_cdr_rows() -> None:
    row = {
        "id": "r1",
        "subscriber": "+447700900001",
        "event_type": "voice",
        "start": "2026-03-02T10:00:00+01:00",
        "duration_seconds": "61",
        "destination": "+447700900123",
        "roaming": "false",
    }
    cdr = parse_cdr(row)
    assert (cdr.quantity, cdr.roaming, cdr.start.utcoffset() is not None) == (D(61), False, True)
    bad = [
        {**row, "start": "2026-03-02T10:00:00"},  # no offset
        {**row, "start": "yesterday"},
        {**row, "duration_seconds": "-1"},
        {**row, "duration_seconds": "1.5"},
        {**row, "duration_seconds": "", "bytes": ""},
        {**row, "bytes": "10"},  # two quantities
        {**row, "event_type": "fax"},
        {**row, "id": ""},
        {**row, "roaming": "maybe"},
    ]
    for b in bad:
        with pytest.raises(RatingError):
            parse_cdr(b)


def test_unrateable_cdr_is_reported_not_guessed() -> None:
    plan = parse_plan(
        plan_body(
            bands=[{"name": "peak", "days": [1], "from": "08:00", "to": "18:00"}],
            rates=[{"event_type": "voice", "band": "peak", "unit_amount": "1"}],
        )
    )
    with pytest.raises(RatingError, match="no voice rate"):
        rate_cdr(plan, call("2026-03-03T10:00:00+00:00", 60), AllowanceLedger())
    with pytest.raises(RatingError, match="no version"):
        rate_cdrs([plan], [call("2025-12-31T10:00:00+00:00", 60)])
