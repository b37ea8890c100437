"""Identifiers and codes, checked for form (a code list is not required).

NPI: ten digits whose last is a Luhn check digit computed over the prefix
80840 (the US health-industry number) and the first nine digits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from stdnum import luhn

from billing.errors import InvalidBillingRequest

MAX_DIAGNOSES = 12  # an 837P claim carries at most 12 (HI segments)
MAX_POINTERS = 4  # SV107: up to four pointers per service line
MAX_MODIFIERS = 4

_ICD10CM = re.compile(r"^[A-TV-Z][0-9][0-9A-Z](?:\.?[0-9A-Z]{1,4})?$")
# CPT (five digits, or four and F/T/U for categories II and III) or HCPCS level II.
_PROCEDURE = re.compile(r"^(?:[0-9]{4}[0-9FTU]|[A-V][0-9]{4})$")
_MODIFIER = re.compile(r"^[0-9A-Z]{2}$")
_PLACE_OF_SERVICE = re.compile(r"^[0-9]{2}$")
_TAXONOMY = re.compile(r"^[0-9]{3}[0-9A-Z]{6}X$")
_TAX_ID = re.compile(r"^[0-9]{2}-?[0-9]{7}$")

PRIORITIES = ("primary", "secondary", "tertiary")


def npi(value: str) -> str:
    text = value.strip()
    if not (len(text) == 10 and text.isdigit() and luhn.is_valid("80840" + text)):
        raise InvalidBillingRequest(f"npi {value!r} is not a valid NPI (10 digits, check digit)")
    return text


def diagnosis(value: str) -> str:
    """An ICD-10-CM code as stored: upper case, without the dot (as X12 writes it)."""
    text = value.strip().upper()
    if not _ICD10CM.match(text):
        raise InvalidBillingRequest(f"diagnosis {value!r} is not an ICD-10-CM code")
    return text.replace(".", "")


def diagnoses(values: Sequence[str]) -> list[str]:
    if not values:
        raise InvalidBillingRequest("an encounter needs at least one diagnosis")
    if len(values) > MAX_DIAGNOSES:
        raise InvalidBillingRequest(f"at most {MAX_DIAGNOSES} diagnoses per encounter")
    codes = [diagnosis(v) for v in values]
    if len(set(codes)) != len(codes):
        raise InvalidBillingRequest("a diagnosis is listed twice")
    return codes


def procedure(value: str) -> str:
    text = value.strip().upper()
    if not _PROCEDURE.match(text):
        raise InvalidBillingRequest(f"code {value!r} is not a CPT or HCPCS code")
    return text


def modifiers(values: Sequence[str]) -> list[str]:
    if len(values) > MAX_MODIFIERS:
        raise InvalidBillingRequest(f"at most {MAX_MODIFIERS} modifiers per code")
    found = [v.strip().upper() for v in values]
    for value in found:
        if not _MODIFIER.match(value):
            raise InvalidBillingRequest(f"modifier {value!r} is not two letters or digits")
    return found


def pointers(values: Sequence[int], diagnosis_count: int) -> list[int]:
    if not values or len(values) > MAX_POINTERS:
        raise InvalidBillingRequest(f"each charge points at 1 to {MAX_POINTERS} diagnoses")
    for value in values:
        if not 1 <= value <= diagnosis_count:
            raise InvalidBillingRequest(
                f"diagnosis pointer {value} is not between 1 and {diagnosis_count}"
            )
    return list(values)


def place_of_service(value: str) -> str:
    if not _PLACE_OF_SERVICE.match(value):
        raise InvalidBillingRequest(f"place_of_service {value!r} is not a two-digit POS code")
    return value


def taxonomy(value: str | None) -> str | None:
    if value is not None and not _TAXONOMY.match(value):
        raise InvalidBillingRequest(f"taxonomy {value!r} is not a provider taxonomy code")
    return value


def tax_id(value: str | None) -> str | None:
    if value is None:
        return None
    if not _TAX_ID.match(value):
        raise InvalidBillingRequest(f"tax_id {value!r} is not an EIN (NN-NNNNNNN)")
    return value.replace("-", "")


def priority(value: str) -> str:
    if value not in PRIORITIES:
        raise InvalidBillingRequest(f"priority {value!r}: use one of {', '.join(PRIORITIES)}")
    return value
