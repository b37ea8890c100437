"""Webhook rules: the signature, the retry schedule, the addresses refused.

Signature (Stripe's scheme): the header `ActiveBilling-Signature:
t=<unix seconds>,v1=<hex>` where hex is HMAC-SHA256 keyed with the endpoint's
secret over `f"{t}.{body}"` (the raw body bytes). A receiver recomputes it,
compares in constant time and refuses a `t` older than its tolerance (replay).

Retries: attempt n (1-based) that fails waits `schedule[n-1]` seconds before
attempt n+1; after the last delay's attempt fails the delivery is given up.
The schedule is the book's `webhook_retry_seconds`; by default it doubles
from one minute: 1, 2, 4 … 2048 minutes, 12 retries, the 13th and last
attempt about 2.8 days after the first (within Stripe's 3 days).

An endpoint is disabled after `DISABLE_AFTER` consecutive failed attempts
(book setting `webhook_disable_after`), across its deliveries; any success
resets the count.

Targets: loopback, private, link-local, shared (CGNAT), multicast, reserved
and unspecified addresses are refused unless the endpoint was created with
`allow_private_network` (SSRF: the service must not be a way into its own
network).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from billing.errors import InvalidBillingRequest

__all__ = [
    "DEFAULT_RETRY_SECONDS",
    "DISABLE_AFTER",
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "InvalidWebhook",
    "check_url",
    "is_public_address",
    "next_delay",
    "sign",
    "signature_header",
    "verify",
    "wanted_types",
]

SIGNATURE_HEADER = "ActiveBilling-Signature"
EVENT_ID_HEADER = "ActiveBilling-Event-Id"
DEFAULT_RETRY_SECONDS: tuple[int, ...] = tuple(60 * 2**k for k in range(12))
DISABLE_AFTER = 25
TOLERANCE_SECONDS = 300


class InvalidWebhook(InvalidBillingRequest):
    """A webhook endpoint that cannot be created (bad URL, refused address, unknown
    type), or an event that cannot be redelivered (422)."""

    code = "invalid_webhook"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify(
    secret: str, header: str, body: bytes, now: int, tolerance: int = TOLERANCE_SECONDS
) -> bool:
    """Whether `header` signs `body` with `secret`, made within `tolerance` of `now`."""
    parts = [p.partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k == "t"]
    signatures = [v for k, _, v in parts if k == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, s) for s in signatures)


def next_delay(attempts: int, schedule: Sequence[int] = DEFAULT_RETRY_SECONDS) -> int | None:
    """Seconds to wait after the `attempts`-th failed attempt; None: give up."""
    return schedule[attempts - 1] if 1 <= attempts <= len(schedule) else None


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str) -> str:
    """The URL's host, once the URL is an absolute http(s) URL with one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhook(f"url must be an absolute http or https URL, got {url!r}")
    if parts.username or parts.password:
        raise InvalidWebhook("url must not carry credentials")
    return parts.hostname


def wanted_types(types: Sequence[str], known: Sequence[str]) -> list[str]:
    """The endpoint's event types: known types, `kind.*`, or `*`; empty means all."""
    kinds = {t.split(".", 1)[0] for t in known}
    unknown = [
        t
        for t in types
        if t != "*" and t not in known and not (t.endswith(".*") and t[:-2] in kinds)
    ]
    if unknown:
        raise InvalidWebhook(
            f"unknown event types: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    return sorted(set(types))
