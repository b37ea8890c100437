"""Accounting periods: calendar months named YYYY-MM."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import date
from enum import StrEnum

from ledger.errors import InvalidEntry

_PERIOD_RE = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


class PeriodStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


def period_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def parse_period(name: str) -> str:
    if not _PERIOD_RE.fullmatch(name):
        raise InvalidEntry(f"{name!r} is not a period: write it as YYYY-MM, e.g. 2026-01")
    return name


def period_bounds(name: str) -> tuple[date, date]:
    """First day and the first day after the period: [start, end)."""
    year, month = (int(x) for x in parse_period(name).split("-"))
    start = date(year, month, 1)
    end = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return start, end


def first_open_day(day: date, closed: Collection[str]) -> date:
    """`day` when its period is open, else the first day of the first open
    period after it: where an amount that belongs to a closed period is dated
    (ACCOUNTING.md, "Late usage" and "Revenue recognition")."""
    while period_of(day) in closed:
        day = period_bounds(period_of(day))[1]
    return day
