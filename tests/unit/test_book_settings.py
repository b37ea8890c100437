"""Book settings as a JSON merge patch over known keys (billing/settings.py)."""

from __future__ import annotations

from billing.settings import apply_change, masked, merge_patch, parse_assignment


def test_a_change_merges_objects_and_null_removes_a_key() -> None:
    current = {"address": {"line1": "1 Main St", "city": "Bern"}, "tax_id": "CHE-1"}
    settings, errors = apply_change(
        current, {"address": {"city": "Zürich", "country": "CH"}, "tax_id": None}
    )
    assert errors == []
    assert settings == {"address": {"line1": "1 Main St", "city": "Zürich", "country": "CH"}}
    assert current == {"address": {"line1": "1 Main St", "city": "Bern"}, "tax_id": "CHE-1"}


def test_unknown_keys_and_wrong_types_are_named_each() -> None:
    _, errors = apply_change(
        {},
        {
            "legal_nmae": "Acme",
            "auto_apply_credit": "yes",
            "tax_level": "per_order",
            "address": {"zip": "3000", "country": "Switzerland"},
            "fake_gateway_fee": {"percent": 2.9, "fixed": "0.30"},
            "dunning": {"retry_days": [3, 0]},
            "accepted_dates": {"years_before": True, "years_after": 2},
            "functional_currency": "XXY",
        },
    )
    assert sorted(e.key for e in errors) == [
        "accepted_dates.years_before",
        "address.country",
        "address.zip",
        "auto_apply_credit",
        "dunning.retry_days",
        "fake_gateway_fee.percent",
        "functional_currency",
        "legal_nmae",
        "tax_level",
    ]


def test_every_known_setting_of_the_api_document_is_accepted() -> None:
    change = {
        "legal_name": "Acme GmbH",
        "address": {
            "line1": "Bahnhofstrasse 1",
            "line2": "",
            "city": "Zürich",
            "state": "ZH",
            "postal_code": "8001",
            "country": "CH",
        },
        "tax_id": "CHE-123.456.789 MWST",
        "functional_currency": "CHF",
        "auto_apply_credit": False,
        "tax_level": "per_invoice",
        "payment_instructions": "IBAN CH93 0076 2011 6238 5295 7",
        "email": {"from": "billing@acme.example", "host": "smtp.acme.example", "port": 587},
        "fake_gateway_fee": {"percent": "2.9", "fixed": "0.30"},
        "fake_gateway_dispute_fee": "15.00",
        "dunning": {"retry_days": [3, 5, 7]},
        "sepa_creditor": {
            "name": "Acme",
            "iban": "DE89370400440532013000",
            "bic": "COBADEFFXXX",
            "creditor_id": "DE98ZZZ09999999999",
        },
        "stripe": {
            "api_key": "sk_test_abcdefgh1234",
            "webhook_secret": "whsec_0123456789",
            "base_url": "http://127.0.0.1:12111",
        },
        "webhook_retry_seconds": [60, 300, 3600],
        "accepted_dates": {"years_before": 10, "years_after": 2},
    }
    settings, errors = apply_change({}, change)
    assert errors == []
    assert settings == change


def test_secrets_are_masked_to_their_last_four_characters() -> None:
    shown = masked(
        {"stripe": {"api_key": "sk_test_abcdefgh1234", "base_url": "https://api.stripe.com"}}
    )
    assert shown == {"stripe": {"api_key": "****1234", "base_url": "https://api.stripe.com"}}


def test_command_line_values_are_json_when_they_parse_else_text() -> None:
    assert parse_assignment("auto_apply_credit=false") == ("auto_apply_credit", False)
    assert parse_assignment("legal_name=Acme GmbH") == ("legal_name", "Acme GmbH")
    assert parse_assignment('fake_gateway_dispute_fee="15.00"') == (
        "fake_gateway_dispute_fee",
        "15.00",
    )
    assert parse_assignment("fake_gateway_dispute_fee=15.00") == (
        "fake_gateway_dispute_fee",
        "15.00",
    )
    assert parse_assignment("dunning.retry_days=[3, 5]") == ("dunning", {"retry_days": [3, 5]})
    assert parse_assignment("tax_id=null") == ("tax_id", None)
    assert parse_assignment("address.city=Bern") == ("address", {"city": "Bern"})
    assert merge_patch({"address": {"city": "Bern"}}, {"address": {"line1": "x"}}) == {
        "address": {"city": "Bern", "line1": "x"}
    }


def test_nul_characters_and_hostile_nesting_are_refused_before_merging() -> None:
    deep: object = "x"
    for _ in range(5000):
        deep = {"a": deep}
    _, errors = apply_change({}, {"legal_name": "Acme\x00", "address": deep})
    assert [e.key for e in errors] == ["legal_name", "address.a.a.a.a"]
