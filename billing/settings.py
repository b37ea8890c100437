"""Book settings: the known keys, their shapes, and how a change is applied.

A change is a JSON merge patch (RFC 7396) over the stored settings: an
object merges into the stored object key by key, `null` removes a key, any
other value replaces it. The merged result of every key the change touches
is checked against the schema below; one error per offending key is returned
(errors as values, so a caller reports them all at once), and a change with
any error applies nothing.

Unknown keys are refused at every level, so a misspelt setting cannot sit
unnoticed. Secrets (`stripe.api_key`, `stripe.webhook_secret`,
`email.password`, `smtp.username`, `smtp.password`, the CRM tokens and
secrets) are write-only: `masked` shows them as `****` and their last four
characters.

Settings a reader finds absent take that reader's default (for instance
`auto_apply_credit` true, `tax_level` per line, `accepted_dates` 10 years
before and 2 after the book's today, `functional_currency` the book's own, `locale` en_US).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.currencies import MINOR_UNITS
from ledger.errors import LedgerError
from ledger.money import parse_amount

__all__ = [
    "KNOWN",
    "SECRETS",
    "InvalidSettings",
    "SettingError",
    "apply_change",
    "masked",
    "merge_patch",
    "parse_assignment",
]


@dataclass(frozen=True, slots=True)
class SettingError:
    key: str  # dotted path, e.g. "address.country"
    message: str


class InvalidSettings(LedgerError):
    """A settings change with at least one bad key; nothing was applied."""

    code = "invalid_settings"
    status = 422


Check = Callable[[str, object], list[SettingError]]


def _string(key: str, value: object) -> list[SettingError]:
    if not isinstance(value, str) or not value.strip():
        return [SettingError(key, f"{key} must be a non-empty string")]
    return []


def _text(key: str, value: object) -> list[SettingError]:
    """Free text; may be empty (e.g. an address's second line)."""
    if not isinstance(value, str):
        return [SettingError(key, f"{key} must be a string")]
    return []


def _bool(key: str, value: object) -> list[SettingError]:
    if not isinstance(value, bool):
        return [SettingError(key, f"{key} must be true or false")]
    return []


def _count(key: str, value: object) -> list[SettingError]:
    # bool is an int in Python; JSON true is not a count.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return [SettingError(key, f"{key} must be a whole number ≥ 0")]
    return []


def _positive_ints(key: str, value: object) -> list[SettingError]:
    if not isinstance(value, list) or any(
        isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value
    ):
        return [SettingError(key, f"{key} must be a list of whole numbers > 0")]
    return []


def _decimal(key: str, value: object) -> list[SettingError]:
    """A non-negative decimal string ("2.9", "0.30"); JSON numbers are refused as amounts are."""
    if isinstance(value, str):
        try:
            if parse_amount(value) >= 0:
                return []
        except LedgerError:
            pass
    return [SettingError(key, f'{key} must be a decimal string ≥ 0, e.g. "0.30"')]


def _currency(key: str, value: object) -> list[SettingError]:
    if not isinstance(value, str) or value not in MINOR_UNITS:
        return [SettingError(key, f"{key} must be an ISO 4217 currency code such as USD")]
    return []


def _locale(key: str, value: object) -> list[SettingError]:
    # A CLDR locale id (de_DE, fr_CH, sr_Latn_RS); the edge that formats with it
    # (adapters/locale_format.py) falls back to en_US for one its library lacks.
    if not isinstance(value, str) or not _LOCALE.fullmatch(value):
        return [SettingError(key, f"{key} must be a locale such as en_US or de_DE")]
    return []


_LOCALE = re.compile(r"[a-z]{2,3}(_[A-Z][a-z]{3})?(_([A-Z]{2}|[0-9]{3}))?")


def _country(key: str, value: object) -> list[SettingError]:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{2}", value):
        return [SettingError(key, f"{key} must be an ISO 3166 two-letter country code such as CH")]
    return []


def _email_address(key: str, value: object) -> list[SettingError]:
    if not isinstance(value, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        return [SettingError(key, f"{key} must be an e-mail address")]
    return []


def _url(key: str, value: object) -> list[SettingError]:
    if not isinstance(value, str) or not re.fullmatch(r"https?://\S+", value):
        return [SettingError(key, f"{key} must be an http(s) URL")]
    return []


def _port(key: str, value: object) -> list[SettingError]:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return [SettingError(key, f"{key} must be a port number 1..65535")]
    return []


def _one_of(*choices: str) -> Check:
    def check(key: str, value: object) -> list[SettingError]:
        if value not in choices:
            return [SettingError(key, f"{key} must be one of {', '.join(choices)}")]
        return []

    return check


def _object(fields: Mapping[str, Check]) -> Check:
    """An object of known fields, each optional, each with its own check."""

    def check(key: str, value: object) -> list[SettingError]:
        if not isinstance(value, dict):
            return [SettingError(key, f"{key} must be an object with {', '.join(fields)}")]
        errors: list[SettingError] = []
        for name, item in value.items():
            path = f"{key}.{name}"
            if name not in fields:
                known = ", ".join(fields)
                errors.append(SettingError(path, f"unknown setting {path}; known: {known}"))
            else:
                errors += fields[name](path, item)
        return errors

    return check


_ADJUSTMENT_KEY = re.compile(r"^(CO|OA|PI|CR)(-[A-Z0-9]{1,3})?$")


def _adjustment_accounts(key: str, value: object) -> list[SettingError]:
    """835 adjustments → account: `{"OA": "Income:Contra:Denials", "CO-45": …}` (PR always
    goes to the patient's AR, so it cannot be mapped)."""
    if not isinstance(value, dict):
        return [SettingError(key, f"{key} must map GROUP or GROUP-CARC to an account name")]
    errors: list[SettingError] = []
    for name, account in value.items():
        if not _ADJUSTMENT_KEY.match(name):
            errors.append(
                SettingError(f"{key}.{name}", f"{name!r}: use CO, OA, PI or CR, or GROUP-CARC")
            )
        errors += _string(f"{key}.{name}", account)
    return errors


_dunning_fields = _object(
    {
        "retry_days": _positive_ints,
        "reminder_days_before_due": _positive_ints,
        "reminder_days_after_due": _positive_ints,
        "late_fee": _object({"percent": _decimal, "fixed": _decimal}),
        "past_due_after_days": _count,
        "suspend_after_days": _count,
        "write_off_after_days": _count,
    }
)


def _dunning(key: str, value: object) -> list[SettingError]:
    """billing/dunning.py's policy: a late fee is fixed or a percentage, not both; the
    steps after the due date come in order (past due ≤ suspend ≤ write-off)."""
    errors = _dunning_fields(key, value)
    if errors or not isinstance(value, dict):
        return errors
    fee = value.get("late_fee")
    if isinstance(fee, dict) and len(fee) != 1:
        errors.append(
            SettingError(f"{key}.late_fee", f"{key}.late_fee is either fixed or percent, one")
        )
    days = [value.get(k) for k in ("past_due_after_days", "suspend_after_days")]
    days.append(value.get("write_off_after_days"))
    given = [d for d in days if d is not None]
    if given != sorted(given):
        errors.append(
            SettingError(
                key,
                f"{key}: past_due_after_days ≤ suspend_after_days ≤ write_off_after_days",
            )
        )
    return errors


_smtp_fields = _object(
    {
        "host": _string,
        "port": _port,
        "from": _email_address,
        "username": _string,
        "password": _string,
        "starttls": _bool,
    }
)


def _smtp(key: str, value: object) -> list[SettingError]:
    """The dunning outbox's mail server: `host` and `from` are needed to send at all."""
    errors = _smtp_fields(key, value)
    if not errors and isinstance(value, dict):
        errors += [
            SettingError(f"{key}.{name}", f"{key}.{name} is required to send mail")
            for name in ("host", "from")
            if name not in value
        ]
    return errors


# The known settings (API.md "Book settings") and the shape of each.
KNOWN: dict[str, Check] = {
    "legal_name": _string,
    "address": _object(
        {
            "line1": _string,
            "line2": _text,
            "city": _string,
            "state": _text,
            "postal_code": _string,
            "country": _country,
        }
    ),
    "tax_id": _string,
    "functional_currency": _currency,
    "locale": _locale,
    "auto_apply_credit": _bool,
    "tax_level": _one_of("per_line", "per_invoice"),
    "payment_instructions": _text,
    "email": _object(
        {
            "from": _email_address,
            "reply_to": _email_address,
            "host": _string,
            "port": _port,
            "username": _string,
            "password": _string,
            "starttls": _bool,
        }
    ),
    "fake_gateway_fee": _object({"percent": _decimal, "fixed": _decimal}),
    "fake_gateway_dispute_fee": _decimal,
    "dunning": _dunning,
    "smtp": _smtp,
    "sepa_creditor": _object(
        {
            "name": _string,
            "iban": _string,
            "bic": _string,
            "creditor_id": _string,
            "pain008_version": _one_of("pain.008.001.02", "pain.008.001.08"),
        }
    ),
    "ach_originator": _object(
        {
            "odfi_routing": _string,
            "odfi_name": _string,
            "company_name": _string,
            "company_id": _string,
            "immediate_origin": _string,
        }
    ),
    "direct_debit_return_fee": _decimal,
    "stripe": _object({"api_key": _string, "webhook_secret": _string, "base_url": _url}),
    "salesforce": _object(
        {
            "instance_url": _url,
            "access_token": _string,
            "api_version": _string,
            "organization_id": _string,
            "outbound_token": _string,
            "allow_private_network": _bool,
        }
    ),
    "hubspot": _object(
        {
            "access_token": _string,
            "base_url": _url,
            "app_secret": _string,
            "allow_private_network": _bool,
        }
    ),
    "webhook_retry_seconds": _positive_ints,
    "webhook_disable_after": _count,
    "accepted_dates": _object({"years_before": _count, "years_after": _count}),
    # Per API key, per server process: a token bucket (adapters/http/operations.py).
    "rate_limit": _object({"requests_per_second": _decimal, "burst": _count}),
    "healthcare_adjustment_accounts": _adjustment_accounts,
}

SECRETS: dict[str, tuple[str, ...]] = {
    "stripe": ("api_key", "webhook_secret"),
    "email": ("password",),
    "salesforce": ("access_token", "outbound_token"),
    "hubspot": ("access_token", "app_secret"),
    "smtp": ("username", "password"),
}


def merge_patch(current: object, patch: object) -> object:
    """RFC 7396: objects merge key by key, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    base = dict(current) if isinstance(current, dict) else {}
    for key, value in patch.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = merge_patch(base.get(key), value)
    return base


MAX_DEPTH = 4  # the deepest known setting is dunning.late_fee.fixed (3 levels)


def _unstorable(key: str, value: object, depth: int = 1) -> list[SettingError]:
    """Values PostgreSQL's jsonb cannot hold (NUL) or deeper than any known setting;
    checked before merging, so a hostile body never recurses far."""
    if isinstance(value, str):
        return [SettingError(key, f"{key} contains a NUL character")] if "\x00" in value else []
    if isinstance(value, list | dict):
        if depth > MAX_DEPTH:
            return [SettingError(key, f"{key} is nested deeper than any setting")]
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for name, item in items:
            if "\x00" in str(name):
                return [SettingError(key, f"{key} has a key with a NUL character")]
            found = _unstorable(f"{key}.{name}", item, depth + 1)
            if found:
                return found
    return []


def apply_change(
    current: Mapping[str, Any], change: object
) -> tuple[dict[str, Any], list[SettingError]]:
    """The settings after `change`, and every error; on any error use `current` unchanged."""
    if not isinstance(change, dict):
        return dict(current), [SettingError("", "settings must be a JSON object of keys to change")]
    errors = [e for key, value in change.items() for e in _unstorable(str(key), value)]
    if errors:
        return dict(current), errors
    for key in change:
        if key not in KNOWN:
            errors.append(
                SettingError(key, f"unknown setting {key}; known: {', '.join(sorted(KNOWN))}")
            )
    merged = merge_patch(current, change)
    assert isinstance(merged, dict)
    for key in change:
        if key in KNOWN and key in merged:
            errors += KNOWN[key](key, merged[key])
    return merged, errors


def _mask(secret: object) -> str:
    text = str(secret)
    return "****" + text[-4:] if len(text) >= 12 else "****"


def masked(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as shown to readers: secrets replaced by `****` and their last 4."""
    out = dict(settings)
    for key, fields in SECRETS.items():
        value = out.get(key)
        if isinstance(value, dict):
            out[key] = {k: _mask(v) if k in fields else v for k, v in value.items()}
    return out


def parse_assignment(text: str) -> tuple[str, object]:
    """`KEY=VALUE` from the command line: VALUE as JSON when it parses, else the string.

    `KEY` may be dotted (`address.city=Bern`) to set one field of an object. A
    number with a fraction stays its exact text (`fixed=0.30` gives "0.30"), as
    amounts are decimal strings; whole numbers stay numbers.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidSettings(f"{text!r} is not KEY=VALUE", setting=text)
    value: object
    try:
        value = json.loads(raw, parse_float=str)
    except ValueError:
        value = raw
    for part in reversed(key.split(".")[1:]):
        value = {part: value}
    return key.split(".")[0], value
