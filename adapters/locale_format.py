"""Dates and money in the book's locale (book setting `locale`, default en_US),
formatted by babel for the console and the invoice document.

Money is never rounded for display: an amount keeps every digit it has and
shows at least the currency's minor unit (1234.5 EUR in de_DE: `1.234,50 €`).
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import psycopg
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_currency

from billing.postgres.settings import read_settings

DEFAULT_LOCALE = "en_US"


def valid_locale(name: str) -> bool:
    try:
        Locale.parse(name)
    except (UnknownLocaleError, ValueError, TypeError):
        return False
    return True


def book_locale(conn: psycopg.Connection, book_id: uuid.UUID) -> str:
    configured = read_settings(conn, book_id).get("locale")
    if isinstance(configured, str) and valid_locale(configured):
        return configured
    return DEFAULT_LOCALE


def money(amount: Decimal | str | None, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    if amount is None or amount == "":
        return ""
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    return format_currency(value, currency, locale=locale, decimal_quantization=False)


def day(value: date | str | None, locale: str = DEFAULT_LOCALE) -> str:
    if value is None or value == "":
        return ""
    parsed = value if isinstance(value, date) else date.fromisoformat(value)
    return format_date(parsed, format="medium", locale=locale)
