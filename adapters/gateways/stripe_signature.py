"""Stripe's webhook signature scheme, checked without the network.

`Stripe-Signature: t=1700000000,v1=<hex>[,v1=<hex>…]` where each v1 is
HMAC-SHA256, keyed with the endpoint's secret, of `"{t}.{raw body}"`. The
event is genuine when one v1 matches (compared in constant time) and `t` is
within the tolerance (5 minutes) of now, so a captured request cannot be
replayed later. Anything else raises WebhookRejected (answered 400).
"""

from __future__ import annotations

import hashlib
import hmac

from adapters.gateways.base import WebhookRejected

__all__ = ["TOLERANCE_SECONDS", "sign", "verify_signature"]

TOLERANCE_SECONDS = 300


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The header Stripe would send (used by tests and the stub server)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    payload: bytes,
    header: str | None,
    secret: str,
    now: int,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    if not header:
        raise WebhookRejected("the Stripe-Signature header is missing")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookRejected("the Stripe-Signature header has no t=… and v1=… parts")
    if abs(now - timestamp) > tolerance:
        raise WebhookRejected(
            f"the signature's timestamp is {abs(now - timestamp)} s away from now"
            f" (tolerance {tolerance} s)"
        )
    expected = sign(payload, secret, timestamp).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise WebhookRejected("no v1 signature matches this payload and the endpoint secret")
