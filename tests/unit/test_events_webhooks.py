"""The pure rules of events and webhooks: event shape, signature, retry schedule,
refused addresses, wanted types."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest

from billing.events import EVENT_TYPES, object_json, previous_attributes
from billing.webhooks import (
    DEFAULT_RETRY_SECONDS,
    InvalidWebhook,
    check_url,
    is_public_address,
    next_delay,
    signature_header,
    verify,
    wanted_types,
)


@dataclass(frozen=True)
class CreditNote:
    id: uuid.UUID
    total: Decimal
    issue_date: date


def test_data_object_names_its_kind_and_carries_decimals_as_strings() -> None:
    note = CreditNote(uuid.UUID(int=7), Decimal("10.50"), date(2026, 1, 31))
    assert object_json("credit_note.created", note) == {
        "object": "credit_note",
        "id": "00000000-0000-0000-0000-000000000007",
        "total": "10.50",
        "issue_date": "2026-01-31",
    }
    assert object_json("period.closed", {"id": "2026-01"}) == {"object": "period", "id": "2026-01"}


def test_previous_attributes_hold_only_what_changed() -> None:
    before = {"id": "c1", "tax_rate": "0.10", "name": "Acme"}
    after = {"id": "c1", "tax_rate": "0", "name": "Acme"}
    assert previous_attributes(before, after) == {"tax_rate": "0.10"}


def test_signature_verifies_and_a_tampered_body_or_old_stamp_does_not() -> None:
    header = signature_header("whsec_x", 1_700_000_000, b'{"id":"evt_1"}')
    assert header.startswith("t=1700000000,v1=")
    assert verify("whsec_x", header, b'{"id":"evt_1"}', now=1_700_000_010)
    assert not verify("whsec_x", header, b'{"id":"evt_2"}', now=1_700_000_010)
    assert not verify("whsec_y", header, b'{"id":"evt_1"}', now=1_700_000_010)
    assert not verify("whsec_x", header, b'{"id":"evt_1"}', now=1_700_000_000 + 301)
    assert not verify("whsec_x", "v1=abc", b"{}", now=0)


def test_default_schedule_doubles_from_a_minute_and_ends_within_3_days() -> None:
    assert DEFAULT_RETRY_SECONDS[:3] == (60, 120, 240)
    assert len(DEFAULT_RETRY_SECONDS) == 12  # 13 attempts in all
    assert sum(DEFAULT_RETRY_SECONDS) < 3 * 86_400
    assert next_delay(1) == 60 and next_delay(12) == 122_880 and next_delay(13) is None


def test_book_schedule_500_three_times_then_ok_is_the_4th_attempt() -> None:
    schedule = [1, 2, 3]
    assert [next_delay(n, schedule) for n in (1, 2, 3, 4)] == [1, 2, 3, None]


@pytest.mark.parametrize(
    "address",
    [
        *("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254"),
        *("100.64.0.1", "::1", "fe80::1", "fc00::1", "0.0.0.0", "224.0.0.1", "::ffff:127.0.0.1"),
    ],
)
def test_private_loopback_and_link_local_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


def test_public_addresses_are() -> None:
    assert is_public_address("93.184.216.34") and is_public_address("2606:2800:220:1::1")


def test_urls_must_be_http_without_credentials() -> None:
    assert check_url("https://hooks.example.com/x") == "hooks.example.com"
    for bad in ("ftp://example.com/", "/relative", "https://user:pw@example.com/"):
        with pytest.raises(InvalidWebhook):
            check_url(bad)


def test_wanted_types_are_known_types_kinds_or_all() -> None:
    assert wanted_types(["invoice.*", "customer.created"], EVENT_TYPES) == [
        "customer.created",
        "invoice.*",
    ]
    assert wanted_types([], EVENT_TYPES) == []
    with pytest.raises(InvalidWebhook, match=r"invoice\.eaten"):
        wanted_types(["invoice.eaten"], EVENT_TYPES)
