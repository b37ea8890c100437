"""The adapter a book's settings describe, after the SSRF check of its URL.

`salesforce`: `instance_url`, `access_token` (+ `api_version`); `hubspot`:
`access_token`, `base_url` (default https://api.hubapi.com). A URL resolving
to a loopback or private address is refused unless the setting carries
`allow_private_network: true` (book settings are admin-only), as for webhooks.
"""

from __future__ import annotations

from typing import Any

from adapters.crm.base import PROVIDERS, CrmAdapter, CrmRefused
from adapters.crm.hubspot import DEFAULT_BASE_URL, HubSpotAdapter
from adapters.crm.salesforce import API_VERSION, SalesforceAdapter
from adapters.webhooks.store import Resolve, refused_address, resolve_host
from billing.errors import InvalidBillingRequest
from billing.webhooks import InvalidWebhook


def check_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise InvalidBillingRequest(
            f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}"
        )
    return provider


def _checked_url(provider: str, url: str, allow: bool, resolve: Resolve) -> str:
    try:
        refused = refused_address(url, allow, resolve)
    except InvalidWebhook as exc:
        raise CrmRefused(f"{provider}: {exc.message}") from None
    if refused is not None:
        setting = f"{provider}.allow_private_network"
        raise CrmRefused(
            f"{provider} URL {url}: " + refused.replace("allow_private_network", setting)
        )
    return url


def adapter_for(
    settings: dict[str, Any], provider: str, resolve: Resolve = resolve_host
) -> CrmAdapter:
    """The provider's adapter from the book's settings (CrmRefused when not configured)."""
    check_provider(provider)
    config = settings.get(provider) or {}
    allow = bool(config.get("allow_private_network"))
    if provider == "salesforce":
        url, token = config.get("instance_url"), config.get("access_token")
        if not url or not token:
            raise CrmRefused(
                "Salesforce is not configured: set the book settings salesforce.instance_url"
                " and salesforce.access_token"
            )
        _checked_url(provider, url, allow, resolve)
        return SalesforceAdapter(url, token, version=config.get("api_version") or API_VERSION)
    token = config.get("access_token")
    if not token:
        raise CrmRefused("HubSpot is not configured: set the book setting hubspot.access_token")
    base = config.get("base_url") or DEFAULT_BASE_URL
    _checked_url(provider, base, allow, resolve)
    return HubSpotAdapter(token, base)
