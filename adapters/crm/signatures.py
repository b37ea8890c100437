"""Inbound CRM webhooks: verifying HubSpot's signature and Salesforce's outbound messages.

HubSpot (v3): `X-HubSpot-Signature-v3` is base64(HMAC-SHA256(app secret,
method + uri + body + timestamp)), where uri is the full URL HubSpot called
and timestamp the `X-HubSpot-Request-Timestamp` header (milliseconds); a
timestamp more than 5 minutes away from now is refused (replay).

Salesforce outbound messages are SOAP `notifications` that carry no signature
of their own. They are accepted when (1) the URL's `token` query parameter
equals the book's `salesforce.outbound_token` (configure the outbound
message's endpoint URL as `…/v1/webhooks/salesforce/{book_id}?token=<token>`;
compared in constant time) and (2) the message's `OrganizationId` is the
book's `salesforce.organization_id` (15- or 18-character forms compare by
their first 15). The answer is the SOAP `notificationsResponse` with `Ack`
true, or Salesforce retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from defusedxml import ElementTree

__all__ = [
    "ACK",
    "HUBSPOT_TOLERANCE_MS",
    "OutboundMessage",
    "hubspot_signature",
    "parse_outbound_message",
    "verify_hubspot",
    "verify_salesforce_org",
    "verify_salesforce_token",
]

HUBSPOT_TOLERANCE_MS = 5 * 60 * 1000
_SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
_OM = "{http://soap.sforce.com/2005/09/outbound}"
_SF = "{urn:sobject.enterprise.soap.sforce.com}"
_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"

ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    "<soapenv:Body>"
    '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    "<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
)


def hubspot_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_hubspot(
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now_ms: int,
) -> str | None:
    """Why the request is refused, or None when it is HubSpot's."""
    if not signature or not timestamp:
        return "X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required"
    if not timestamp.isdigit() or abs(now_ms - int(timestamp)) > HUBSPOT_TOLERANCE_MS:
        return "the request timestamp is more than 5 minutes away (a replay?)"
    expected = hubspot_signature(secret, method, uri, body, timestamp)
    if not hmac.compare_digest(expected, signature):
        return "the X-HubSpot-Signature-v3 does not sign this request"
    return None


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    organization_id: str
    records: tuple[tuple[str, str], ...]  # (sObject type, Id) per notification


def parse_outbound_message(body: bytes) -> OutboundMessage:
    """The organization and the records of a Salesforce outbound message (ValueError if not one)."""
    try:
        root = ElementTree.fromstring(body)
    except Exception as exc:  # defusedxml refuses entities; ParseError on broken XML
        raise ValueError(f"not an outbound message: {type(exc).__name__}") from None
    notifications = root.find(f"{_SOAP}Body/{_OM}notifications")
    if notifications is None:
        raise ValueError("not an outbound message: no soapenv:Body/notifications")
    organization = (notifications.findtext(f"{_OM}OrganizationId") or "").strip()
    records = []
    for note in notifications.findall(f"{_OM}Notification"):
        sobject = note.find(f"{_OM}sObject")
        if sobject is None:
            continue
        kind = (sobject.get(f"{_XSI}type") or "").rpartition(":")[2]
        record_id = (sobject.findtext(f"{_SF}Id") or "").strip()
        if record_id:
            records.append((kind, record_id))
    return OutboundMessage(organization, tuple(records))


def verify_salesforce_token(expected_token: str | None, token: str | None) -> str | None:
    """Why the URL's token is refused (checked before the body is parsed), or None."""
    if not expected_token:
        return "set the book setting salesforce.outbound_token"
    if not token or not hmac.compare_digest(token.encode(), expected_token.encode()):
        return "the token does not match the book's salesforce.outbound_token"
    return None


def verify_salesforce_org(expected_org: str | None, message: OutboundMessage) -> str | None:
    """Why the message is refused as another organization's, or None."""
    if not expected_org:
        return "set the book setting salesforce.organization_id"
    if not message.organization_id or message.organization_id[:15] != expected_org[:15]:
        return "the message comes from another Salesforce organization"
    return None
