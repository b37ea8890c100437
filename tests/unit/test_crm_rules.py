"""CRM sync rules (billing/crm.py) and the inbound signature schemes, without a database."""

from __future__ import annotations

import base64
import hashlib
import hmac

from adapters.crm.signatures import (
    hubspot_signature,
    parse_outbound_message,
    verify_hubspot,
    verify_salesforce_org,
    verify_salesforce_token,
)
from billing.crm import MISSING, canonical, check_fields, check_outbound, resolve

NOW_MS = 1_767_600_000_000


def test_unknown_customer_fields_and_status_fields_are_each_reported() -> None:
    errors = check_fields({"Name": "name", "Tier__c": "tier", "x y": "email", "Phone": "name"})
    assert len(errors) == 3
    assert any("'tier', which is not a customer field" in e for e in errors)
    assert any("'x y' is not a CRM field name" in e for e in errors)
    assert any("'name' is mapped from more than one CRM field" in e for e in errors)
    assert check_fields({"contact.email": "email", "Region__c": "metadata.region"}) == []
    assert check_fields({"BillingCity": "address.city", "Fax": "address.fax"}) != []
    assert check_outbound({"mrr": "MRR__c", "arr": "ARR__c"}) == [
        "'arr' is not a billing status field; known: mrr, balance_due, overdue,"
        " last_invoice_number, last_invoice_date, next_renewal_date"
    ]


def test_a_new_customer_takes_every_crm_value() -> None:
    assert resolve("tax_rate", "0.2", None, MISSING, exists=False).take_crm


def test_a_field_changed_only_in_the_crm_is_taken_and_only_in_billing_is_kept() -> None:
    last = {"crm": "Acme", "billing": "Acme"}
    assert resolve("name", "Acme Inc", "Acme", last, exists=True) == (True, False)
    assert resolve("name", "Acme", "Acme Ltd", last, exists=True) == (False, False)


def test_both_sides_changed_crm_wins_identity_and_billing_wins_terms() -> None:
    name = resolve("name", "Acme Inc", "Acme Ltd", {"crm": "Acme", "billing": "Acme"}, True)
    assert (name.take_crm, name.conflict) == (True, True)
    days = resolve("payment_terms_days", "60", "45", {"crm": "30", "billing": "30"}, True)
    assert (days.take_crm, days.conflict) == (False, True)


def test_after_billing_won_an_unchanged_crm_value_is_not_taken_again() -> None:
    last = {"crm": "60", "billing": "45"}  # what the last sync saw on each side
    assert resolve("payment_terms_days", "60", "45", last, exists=True) == (False, False)


def test_first_link_with_different_values_is_a_conflict_unless_billing_has_none() -> None:
    assert resolve("name", "Acme Inc", "Acme", MISSING, exists=True) == (True, True)
    assert resolve("email", "a@b.example", None, MISSING, exists=True) == (True, False)


def test_numbers_compare_without_their_trailing_zeros() -> None:
    assert canonical("tax_rate", "0.10") == canonical("tax_rate", 0.1) == "0.1"
    assert canonical("payment_terms_days", "30.0") == "30"
    assert canonical("name", "  ") is None


def test_hubspot_v3_signature_is_base64_hmac_of_method_uri_body_timestamp() -> None:
    body = b'[{"objectId":1}]'
    uri = "https://billing.example/v1/webhooks/hubspot/b"
    expected = base64.b64encode(
        hmac.new(b"secret", b"POST" + uri.encode() + body + str(NOW_MS).encode(),
                 hashlib.sha256).digest()
    ).decode()  # fmt: skip
    assert hubspot_signature("secret", "POST", uri, body, str(NOW_MS)) == expected
    assert verify_hubspot("secret", "POST", uri, body, expected, str(NOW_MS), NOW_MS) is None
    late = NOW_MS + 5 * 60 * 1000 + 1
    assert "5 minutes" in str(
        verify_hubspot("secret", "POST", uri, body, expected, str(NOW_MS), late)
    )
    assert verify_hubspot("other", "POST", uri, body, expected, str(NOW_MS), NOW_MS) is not None
    assert verify_hubspot("secret", "POST", uri, body, None, None, NOW_MS) is not None


def test_salesforce_outbound_message_is_parsed_and_checked() -> None:
    body = b"""<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>
     <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
     <OrganizationId>00D5e000000AbCdEAK</OrganizationId><Notification><Id>04l1</Id>
     <sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>001D000000IqhSLIAZ</sf:Id></sObject></Notification></notifications>
     </soapenv:Body></soapenv:Envelope>"""
    message = parse_outbound_message(body)
    assert message.records == (("Account", "001D000000IqhSLIAZ"),)
    assert verify_salesforce_org("00D5e000000AbCd", message) is None  # the 15-character form
    assert verify_salesforce_org("00D000000000001", message) is not None
    assert verify_salesforce_token("tok", "tok") is None
    assert verify_salesforce_token("tok", "tok2") is not None
    assert verify_salesforce_token(None, "tok") is not None
