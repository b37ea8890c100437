"""Stripe-Signature: HMAC-SHA256 of "t.payload", 5-minute tolerance."""

from __future__ import annotations

import pytest

from adapters.gateways.base import WebhookRejected
from adapters.gateways.stripe_signature import sign, verify_signature

SECRET = "whsec_test"
BODY = b'{"id": "evt_1", "type": "charge.succeeded"}'
NOW = 1_800_000_000


def test_a_signature_made_with_the_secret_is_accepted() -> None:
    verify_signature(BODY, sign(BODY, SECRET, NOW), SECRET, NOW)
    verify_signature(BODY, sign(BODY, SECRET, NOW - 300), SECRET, NOW)  # at the edge


def test_one_matching_v1_among_several_is_enough() -> None:
    header = sign(BODY, SECRET, NOW).replace("v1=", "v1=00,v1=")
    verify_signature(BODY, header, SECRET, NOW)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "t=abc,v1=00",
        sign(BODY, "whsec_other", NOW),
        sign(BODY + b" ", SECRET, NOW),  # the body was changed after signing
        sign(BODY, SECRET, NOW - 301),  # stale
        sign(BODY, SECRET, NOW + 301),  # from the future
    ],
)
def test_missing_wrong_tampered_or_stale_signatures_are_rejected(header: str | None) -> None:
    payload = BODY.rstrip(b" ")
    with pytest.raises(WebhookRejected):
        verify_signature(payload, header, SECRET, NOW)
