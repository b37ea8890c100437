"""Dates a book accepts (ACCOUNTING.md): every effective date, service date and
run date lies within a window around the book's today, by default from 10
years before to 2 years after it; anything else is refused, never clamped.

The window is the book setting `accepted_dates` = {"years_before": int,
"years_after": int}. A year is counted on the calendar: Feb 29 moves to
Feb 28 in a year without it (PostgreSQL's `date + interval 'n years'`, which
the entries trigger of migration 0006 uses too). Settings that are
missing or not whole numbers >= 0 read as the defaults; more than MAX_YEARS
reads as MAX_YEARS.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import date
from typing import Any, NamedTuple

from ledger.errors import DateNotAccepted

__all__ = [
    "DEFAULT_YEARS_AFTER",
    "DEFAULT_YEARS_BEFORE",
    "MAX_YEARS",
    "AcceptedDates",
    "DateWindow",
    "accepted_dates",
    "accepted_window",
    "add_years",
]

DEFAULT_YEARS_BEFORE = 10
DEFAULT_YEARS_AFTER = 2
MAX_YEARS = 1000  # keeps every window inside the years a date can hold


class AcceptedDates(NamedTuple):
    years_before: int = DEFAULT_YEARS_BEFORE
    years_after: int = DEFAULT_YEARS_AFTER


def _years(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return default
    return min(value, MAX_YEARS)


def accepted_dates(settings: Mapping[str, Any] | None) -> AcceptedDates:
    """The book's `accepted_dates` setting, read with its defaults: the one reader."""
    given = (settings or {}).get("accepted_dates")
    if not isinstance(given, Mapping):
        return AcceptedDates()
    return AcceptedDates(
        _years(given.get("years_before"), DEFAULT_YEARS_BEFORE),
        _years(given.get("years_after"), DEFAULT_YEARS_AFTER),
    )


def add_years(day: date, years: int) -> date:
    """The same day `years` later (or earlier); Feb 29 becomes Feb 28."""
    year = day.year + years
    if year > date.max.year:
        return date.max
    if year < date.min.year:
        return date.min
    return day.replace(year=year, day=min(day.day, calendar.monthrange(year, day.month)[1]))


class DateWindow(NamedTuple):
    """The first and last date a book accepts, both included."""

    first: date
    last: date

    def check(self, field: str, day: date) -> date:
        if not self.first <= day <= self.last:
            raise self._refusal(field, day.isoformat())
        return day

    def check_optional(self, field: str, day: date | None) -> date | None:
        return None if day is None else self.check(field, day)

    def check_period(self, field: str, year: int, month: int) -> None:
        """A month is accepted when any of its days is (compared without building
        a date, so year 0 is refused rather than failing)."""
        first, last = (self.first.year, self.first.month), (self.last.year, self.last.month)
        if not first <= (year, month) <= last:
            raise self._refusal(field, f"{year:04d}-{month:02d}")

    def _refusal(self, field: str, given: str) -> DateNotAccepted:
        return DateNotAccepted(
            f"{field} {given} is outside the dates this book accepts "
            f"({self.first.isoformat()} to {self.last.isoformat()}); "
            "the window is the book setting accepted_dates",
            field=field,
            first=self.first.isoformat(),
            last=self.last.isoformat(),
        )


def accepted_window(today: date, setting: AcceptedDates) -> DateWindow:
    """The window around the book's `today` (its simulated date or the real one)."""
    return DateWindow(
        add_years(today, -setting.years_before), add_years(today, setting.years_after)
    )
