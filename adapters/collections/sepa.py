"""SEPA Direct Debit files: pain.008 initiation written with `sepaxml`, and the
banks' answers read back — pain.002 status reports (rejects) and camt.054
notifications of R-transactions (returns, refunds, reversals).

Writing: `sepaxml` builds the document (one PmtInf per sequence type and
collection date) and ships the official XSDs; this module fixes what it
leaves random — the message id, creation time and payment-information ids
come from the caller, so the same run writes the same file — and validates
the result against sepaxml's copy of the XSD of the chosen version
(pain.008.001.02, or .08). Amounts must be EUR with at most 2 decimals.

Reading: namespace-agnostic (ISO, DK and the Swiss SIX variants), through
defusedxml. Each answer is a plain `SepaReturn` (original end-to-end id,
amount when the file gives one, reason code, status); a file that is not
XML, not the expected message, or names no transaction is `CollectionFileError`.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape as xml_escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from billing.errors import InvalidBillingRequest

SCHEMES = ("pain.008.001.02", "pain.008.001.08")
SEQUENCES = ("FRST", "RCUR", "OOFF", "FNAL")


class CollectionFileError(InvalidBillingRequest):
    """A collection file that cannot be written or read (422)."""

    code = "invalid_collection_file"


@dataclass(frozen=True, slots=True)
class SepaCreditor:
    """The book setting `sepa_creditor`."""

    name: str
    iban: str
    bic: str
    creditor_id: str


@dataclass(frozen=True, slots=True)
class SepaDebit:
    end_to_end_id: str
    amount: Decimal  # EUR
    mandate_id: str
    mandate_date: date
    sequence: Literal["FRST", "RCUR", "OOFF", "FNAL"]
    debtor_name: str
    debtor_iban: str
    debtor_bic: str
    remittance: str
    collection_date: date


@dataclass(frozen=True, slots=True)
class SepaReturn:
    end_to_end_id: str
    amount: Decimal | None
    currency: str | None
    reason: str | None  # ISO external code: AC04, AM04, MD06, MS02, …
    status: str  # RJCT (pain.002) or RTRN (camt.054 R-transaction)
    message: str  # pain.002 or camt.054
    additional_info: str | None = None


def creditor_from_settings(settings: dict[str, object]) -> SepaCreditor:
    raw = settings.get("sepa_creditor")
    if not isinstance(raw, dict):
        raise CollectionFileError(
            "set the book setting sepa_creditor (name, iban, bic, creditor_id)"
        )
    missing = [k for k in ("name", "iban", "bic", "creditor_id") if not raw.get(k)]
    if missing:
        raise CollectionFileError(f"sepa_creditor lacks {', '.join(missing)}")
    return SepaCreditor(raw["name"], raw["iban"], raw["bic"], raw["creditor_id"])


def _cents(amount: Decimal, end_to_end_id: str) -> int:
    if amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise CollectionFileError(
            f"{end_to_end_id}: a SEPA amount is greater than zero with at most 2 decimals",
            end_to_end_id=end_to_end_id,
        )
    return int(amount * 100)


def _xsd(scheme: str) -> str:
    import sepaxml

    return os.path.join(os.path.dirname(sepaxml.__file__), "schemas", scheme + ".xsd")


@functools.cache
def _schema(scheme: str) -> Any:
    """The XSD, built once per process: building it costs more than validating a run."""
    import xmlschema

    return xmlschema.XMLSchema(_xsd(scheme))


def validate_pain008(xml: bytes, scheme: str) -> None:
    """Validate against the official XSD shipped by sepaxml (raises CollectionFileError)."""
    import xmlschema

    try:
        _schema(scheme).validate(xml.decode())
    except xmlschema.XMLSchemaValidationError as exc:
        raise CollectionFileError(f"the {scheme} file is not valid: {exc.reason}") from None


def write_pain008(
    creditor: SepaCreditor,
    debits: Sequence[SepaDebit],
    *,
    message_id: str,
    created_at: datetime,
    scheme: str = "pain.008.001.02",
    validate: bool = True,
) -> bytes:
    """A pain.008 file of `debits` (one payment information per sequence and date)."""
    from sepaxml import SepaDD

    if scheme not in SCHEMES:
        raise CollectionFileError(f"scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    if not debits:
        raise CollectionFileError("a collection file needs at least one debit")
    if not 1 <= len(message_id) <= 35:
        raise CollectionFileError("a message id has 1 to 35 characters")
    seen: set[str] = set()
    config = {
        "name": creditor.name,
        "IBAN": creditor.iban,
        "BIC": creditor.bic,
        "batch": True,
        "creditor_id": creditor.creditor_id,
        "currency": "EUR",
    }
    try:
        sdd = SepaDD(config, schema=scheme, clean=True)
        for d in debits:
            if d.end_to_end_id in seen or not 1 <= len(d.end_to_end_id) <= 35:
                raise CollectionFileError(
                    f"end-to-end id {d.end_to_end_id!r} is empty, too long or not unique",
                    end_to_end_id=d.end_to_end_id,
                )
            seen.add(d.end_to_end_id)
            if d.sequence not in SEQUENCES:
                raise CollectionFileError(f"sequence {d.sequence!r}: use FRST, RCUR, OOFF or FNAL")
            sdd.add_payment(
                {
                    "name": d.debtor_name,
                    "IBAN": d.debtor_iban,
                    "BIC": d.debtor_bic,
                    "amount": _cents(d.amount, d.end_to_end_id),
                    "type": d.sequence,
                    "collection_date": d.collection_date,
                    "mandate_id": d.mandate_id,
                    "mandate_date": d.mandate_date,
                    "description": d.remittance,
                    "endtoend_id": d.end_to_end_id,
                }
            )
        raw: bytes = sdd.export(validate=False)
    except CollectionFileError:
        raise
    except Exception as exc:  # sepaxml raises bare Exceptions for invalid input
        raise CollectionFileError(f"cannot write the SEPA file: {exc}") from None
    xml = _deterministic(raw, message_id, created_at)
    if validate:
        validate_pain008(xml, scheme)
    return xml


def _deterministic(raw: bytes, message_id: str, created_at: datetime) -> bytes:
    """Replace sepaxml's random message id, clock time and payment-information ids.

    A substitution on sepaxml's own output (one MsgId and CreDtTm, in the group
    header, before any payment information), not a second parse: serializing the
    tree again would double the time of a large file. Both values are escaped."""
    stamp = created_at.strftime("%Y-%m-%dT%H:%M:%S")
    out = _MSG_ID.sub(b"<MsgId>" + _escape(message_id) + b"</MsgId>", raw, count=1)
    out = _CREATED.sub(b"<CreDtTm>" + stamp.encode() + b"</CreDtTm>", out, count=1)
    counter = iter(range(1, 1 << 30))
    prefix = _escape(message_id[:30])
    return _PMT_INF_ID.sub(
        lambda _: b"<PmtInfId>" + prefix + b"-" + str(next(counter)).encode() + b"</PmtInfId>",
        out,
    )


def _escape(text: str) -> bytes:
    return xml_escape(text).encode()


_MSG_ID = re.compile(rb"<MsgId>[^<]*</MsgId>")
_CREATED = re.compile(rb"<CreDtTm>[^<]*</CreDtTm>")
_PMT_INF_ID = re.compile(rb"<PmtInfId>[^<]*</PmtInfId>")


# --- reading ---------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child(node: Element, *path: str) -> Element | None:
    current: Element | None = node
    for name in path:
        if current is None:
            return None
        current = next((c for c in current if _local(c.tag) == name), None)
    return current


def _first(*nodes: Element | None) -> Element | None:
    # not `or`: an element without children is falsy
    return next((n for n in nodes if n is not None), None)


def _text(node: Element, *path: str) -> str | None:
    found = _child(node, *path)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _all(node: Element, name: str) -> list[Element]:
    return [n for n in node.iter() if _local(n.tag) == name]


def _parse(data: bytes) -> Element:
    try:
        root: Element = SafeET.fromstring(data)
    except (SafeET.ParseError, DefusedXmlException, ValueError) as exc:
        raise CollectionFileError(f"not a well-formed XML file: {exc}") from None
    return root


def _amount(node: Element | None) -> tuple[Decimal | None, str | None]:
    if node is None or node.text is None:
        return None, None
    try:
        return Decimal(node.text.strip()), node.get("Ccy")
    except ArithmeticError:
        raise CollectionFileError(f"amount {node.text!r} is not a decimal") from None


def parse_pain002(data: bytes) -> list[SepaReturn]:
    """Rejected transactions of a pain.002 status report. A whole group rejected
    (GrpSts RJCT) without transaction detail is an error naming its reason:
    the caller must treat every transaction of the original message as rejected."""
    root = _parse(data)
    report = _child(root, "CstmrPmtStsRpt")
    if _local(root.tag) != "Document" or report is None:
        raise CollectionFileError("not a pain.002 payment status report (no CstmrPmtStsRpt)")
    out = []
    for tx in _all(report, "TxInfAndSts"):
        status = _text(tx, "TxSts")
        if status != "RJCT":
            continue
        e2e = _text(tx, "OrgnlEndToEndId")
        if e2e is None:
            raise CollectionFileError("a rejected transaction has no OrgnlEndToEndId")
        amount, currency = _amount(
            _first(
                _child(tx, "OrgnlTxRef", "Amt", "InstdAmt"),
                _child(tx, "OrgnlTxRef", "IntrBkSttlmAmt"),
            )
        )
        out.append(
            SepaReturn(
                end_to_end_id=e2e,
                amount=amount,
                currency=currency,
                reason=_text(tx, "StsRsnInf", "Rsn", "Cd")
                or _text(tx, "StsRsnInf", "Rsn", "Prtry"),
                status="RJCT",
                message="pain.002",
                additional_info=_text(tx, "StsRsnInf", "AddtlInf"),
            )
        )
    if not out:
        group = _text(report, "OrgnlGrpInfAndSts", "GrpSts")
        if group == "RJCT":
            reason = _text(report, "OrgnlGrpInfAndSts", "StsRsnInf", "Rsn", "Cd")
            original = _text(report, "OrgnlGrpInfAndSts", "OrgnlMsgId")
            raise CollectionFileError(
                f"the whole message {original} was rejected ({reason}): no transaction detail",
                original_message=original,
                reason=reason,
            )
    return out


def parse_camt054_returns(data: bytes) -> list[SepaReturn]:
    """R-transactions of a camt.054: transaction details carrying return information
    (RtrInf), each with its original end-to-end id, amount and reason code."""
    root = _parse(data)
    notification = _child(root, "BkToCstmrDbtCdtNtfctn")
    if _local(root.tag) != "Document" or notification is None:
        raise CollectionFileError("not a camt.054 notification (no BkToCstmrDbtCdtNtfctn)")
    out = []
    for tx in _all(notification, "TxDtls"):
        info = _child(tx, "RtrInf")
        if info is None:
            continue
        e2e = _text(tx, "Refs", "EndToEndId")
        if e2e is None or e2e == "NOTPROVIDED":
            raise CollectionFileError("a returned transaction has no end-to-end id")
        amount, currency = _amount(_first(_child(tx, "Amt"), _child(tx, "AmtDtls", "TxAmt", "Amt")))
        out.append(
            SepaReturn(
                end_to_end_id=e2e,
                amount=amount,
                currency=currency,
                reason=_text(info, "Rsn", "Cd") or _text(info, "Rsn", "Prtry"),
                status="RTRN",
                message="camt.054",
                additional_info=_text(info, "AddtlInf"),
            )
        )
    return out


def parse_sepa_returns(data: bytes) -> list[SepaReturn]:
    """pain.002 or camt.054, told apart by their root message element."""
    root = _parse(data)
    names = {_local(c.tag) for c in root}
    if "CstmrPmtStsRpt" in names:
        return parse_pain002(data)
    if "BkToCstmrDbtCdtNtfctn" in names:
        return parse_camt054_returns(data)
    raise CollectionFileError("neither a pain.002 status report nor a camt.054 notification")
