"""CRM sync rules: which fields may be mapped, who owns a field, how a conflict ends.

Inbound, a book maps CRM fields (the CRM's own names; `contact.email` and
`contact.name` name the account's billing contact) to customer fields:
`name`, `email`, `payment_terms`, `payment_terms_days`, `tax_rate`,
`tax_treatment`, `address.<line1|line2|city|state|postal_code|country>` and
`metadata.<key>`. Outbound, it maps billing status fields (`mrr`,
`balance_due`, `overdue`, `last_invoice_number`, `last_invoice_date`,
`next_renewal_date`) to CRM fields. Anything else is refused (422).

Conflicts. Each link remembers each field's value on both sides at the last
sync. A field changed on one side since then takes that side's value; a field
changed on both sides to different values is a conflict, resolved by who owns
it: the CRM owns identity (name, email, address, metadata) and wins there;
billing owns billing terms (payment terms, tax rate and treatment) and keeps
them. A customer first linked to a record has no agreed value yet: a
difference is a conflict under the same rule. Every conflict is logged.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

__all__ = [
    "ADDRESS_PARTS",
    "BILLING_OWNED",
    "DEFAULT_FIELDS",
    "DEFAULT_OUTBOUND",
    "MISSING",
    "STATUS_FIELDS",
    "Resolution",
    "canonical",
    "check_fields",
    "check_outbound",
    "owner",
    "resolve",
]

ADDRESS_PARTS = ("line1", "line2", "city", "state", "postal_code", "country")
BILLING_OWNED = frozenset({"payment_terms", "payment_terms_days", "tax_rate", "tax_treatment"})
_TOP = frozenset({"name", "email"} | BILLING_OWNED)
STATUS_FIELDS = (
    "mrr",
    "balance_due",
    "overdue",
    "last_invoice_number",
    "last_invoice_date",
    "next_renewal_date",
)
CONTACT_FIELDS = ("contact.email", "contact.name")
_CRM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")

DEFAULT_FIELDS: dict[str, dict[str, str]] = {
    "salesforce": {
        "Name": "name",
        "BillingStreet": "address.line1",
        "BillingCity": "address.city",
        "BillingState": "address.state",
        "BillingPostalCode": "address.postal_code",
        "BillingCountry": "address.country",
        "contact.email": "email",
    },
    "hubspot": {
        "name": "name",
        "address": "address.line1",
        "city": "address.city",
        "state": "address.state",
        "zip": "address.postal_code",
        "country": "address.country",
        "contact.email": "email",
    },
}

DEFAULT_OUTBOUND: dict[str, dict[str, str]] = {
    "salesforce": {
        "mrr": "ActiveBilling_MRR__c",
        "balance_due": "ActiveBilling_Balance_Due__c",
        "overdue": "ActiveBilling_Overdue__c",
        "last_invoice_number": "ActiveBilling_Last_Invoice_Number__c",
        "last_invoice_date": "ActiveBilling_Last_Invoice_Date__c",
        "next_renewal_date": "ActiveBilling_Next_Renewal_Date__c",
    },
    "hubspot": {name: f"activebilling_{name}" for name in STATUS_FIELDS},
}


def _customer_field(name: str) -> bool:
    head, _, tail = name.partition(".")
    if not tail:
        return name in _TOP
    if head == "address":
        return tail in ADDRESS_PARTS
    return head == "metadata" and bool(_CRM_NAME.match(tail))


def check_fields(fields: dict[str, Any]) -> list[str]:
    """Errors of an inbound mapping (CRM field → customer field), all at once."""
    errors = []
    for crm, target in fields.items():
        if not (_CRM_NAME.match(crm) or crm in CONTACT_FIELDS):
            errors.append(f"{crm!r} is not a CRM field name (letters, digits, _; or contact.email)")
        if not isinstance(target, str) or not _customer_field(target):
            errors.append(
                f"{crm!r} maps to {target!r}, which is not a customer field; known: name, email,"
                f" {', '.join(sorted(BILLING_OWNED))}, address.<{'|'.join(ADDRESS_PARTS)}>,"
                " metadata.<key>"
            )
    targets = [t for t in fields.values() if isinstance(t, str)]
    for twice in sorted({t for t in targets if targets.count(t) > 1}):
        errors.append(f"{twice!r} is mapped from more than one CRM field")
    return errors


def check_outbound(outbound: dict[str, Any]) -> list[str]:
    """Errors of an outbound mapping (billing status field → CRM field)."""
    errors = []
    for status, crm in outbound.items():
        if status not in STATUS_FIELDS:
            errors.append(
                f"{status!r} is not a billing status field; known: {', '.join(STATUS_FIELDS)}"
            )
        if not isinstance(crm, str) or not _CRM_NAME.match(crm):
            errors.append(f"{status!r} maps to {crm!r}, which is not a CRM field name")
    return errors


def owner(field: str) -> str:
    """Who wins a conflict on the field: "billing" for billing terms, else "crm"."""
    return "billing" if field in BILLING_OWNED else "crm"


def canonical(field: str, value: Any) -> str | None:
    """A field's value as comparable text: empty is None, numbers without trailing zeros."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if field in ("tax_rate", "payment_terms_days"):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return str(value).strip()
        text = format(number.normalize(), "f")
        return text if number.is_finite() else str(value)
    return str(value).strip()


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # no agreed value yet (the record was never linked)


class Resolution(NamedTuple):
    take_crm: bool  # send the CRM's value to the customer
    conflict: bool  # both sides changed it (logged)


def resolve(
    field: str, crm: str | None, billing: str | None, last: Any, exists: bool
) -> Resolution:
    """What to do with one mapped field; values canonical, `last` the link's
    `{"crm": …, "billing": …}` for the field at the last sync (or MISSING)."""
    if not exists:
        return Resolution(take_crm=True, conflict=False)
    if crm == billing:
        return Resolution(take_crm=False, conflict=False)
    if last is MISSING and billing is None:  # nothing on the billing side to lose
        return Resolution(take_crm=True, conflict=False)
    crm_changed = last is MISSING or crm != last.get("crm")
    billing_changed = last is MISSING or billing != last.get("billing")
    if not crm_changed:
        return Resolution(take_crm=False, conflict=False)
    if not billing_changed:
        return Resolution(take_crm=True, conflict=False)
    return Resolution(take_crm=owner(field) == "crm", conflict=True)
