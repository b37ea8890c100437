"""ISO 20022 camt.053 (BkToCstmrStmt) end-of-day statements, versions 2 to 8.

camt.052 reports and camt.054 notifications share the entry structure but are
rejected with `unsupported_format`: they carry pending entries and usually no
closing balance, so they cannot be checked the way a statement can, and the
same bookings arrive again in the next camt.053.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import TypeVar
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from .model import ReferenceMinter, Statement, StatementError, StatementLine, distinct_references
from .validation import collect_errors

_T = TypeVar("_T")
_NAMESPACE = re.compile(r"^urn:iso:std:iso:20022:tech:xsd:camt\.(\d{3})\.001\.(\d{2})$")
_SUPPORTED_VERSIONS = range(2, 9)
_MESSAGES = {
    "BkToCstmrStmt": "053",
    "BkToCstmrAcctRpt": "052",
    "BkToCstmrDbtCdtNtfctn": "054",
}
_WHY_NOT = {
    "052": "camt.052 is an intraday account report",
    "054": "camt.054 is a debit/credit notification",
}
# ISO amounts are unsigned; the sign lives in CdtDbtInd.
_AMOUNT = re.compile(r"^\d+(\.\d+)?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# xs:date may carry a time zone suffix, which does not change the calendar day.
_XS_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(Z|[+-]\d{2}:\d{2})?$")


@dataclass(frozen=True, slots=True)
class _Balance:
    amount: Decimal
    currency: str
    on: date | None


def parse_camt053(data: bytes, time_zone: tzinfo = UTC) -> list[Statement]:
    """Parse and check; raise the first problem found."""
    statements, errors = read_camt053(data, time_zone)
    if errors:
        raise errors[0]
    return statements


def read_camt053(
    data: bytes, time_zone: tzinfo = UTC
) -> tuple[list[Statement], list[StatementError]]:
    """Parse, returning statements and every problem they show.

    `time_zone` is the bank account's: a date-time with an offset (a booking
    at 23:30Z) is booked on its calendar day there. Raises StatementError
    only when the file cannot be read at all.
    """
    body = _message_body(*_parse_xml(data))
    elements = body.findall("Stmt")
    if not elements:
        raise StatementError(
            "no_statements",
            "the camt.053 file holds no <Stmt> statement; export it again from online "
            "banking with an account and a date range selected.",
        )
    errors: list[StatementError] = []
    statements = [_statement(element, errors, time_zone) for element in elements]
    return statements, collect_errors(statements, errors)


def _parse_xml(data: bytes) -> tuple[Element, str]:
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise StatementError(
            "unsafe_xml",
            f"the XML declares a DTD or entities ({exc}); bank statements never need "
            "them, so the file was refused. Export it again from the bank.",
        ) from exc
    except SafeET.ParseError as exc:
        raise StatementError(
            "malformed_xml",
            f"the file is not well-formed XML ({exc}); it is probably truncated or "
            "damaged. Download it again from the bank.",
        ) from exc
    except (LookupError, ValueError) as exc:
        # expat's complaint about the declared encoding (unknown or multi-byte).
        raise StatementError(
            "malformed_xml",
            f"the XML declares an encoding that cannot be read ({exc}); export the "
            "statement again as UTF-8.",
        ) from exc
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    # Paths below are written without namespaces: every version uses its own
    # URI, and the structure we read is the same across them.
    for element in root.iter():
        if element.tag.startswith("{"):
            element.tag = element.tag.split("}", 1)[1]
    return root, namespace


def _message_body(root: Element, namespace: str) -> Element:
    if root.tag != "Document":
        raise StatementError(
            "unsupported_format",
            f"the XML root is <{root.tag}>, not an ISO 20022 <Document>; this is not a "
            "camt.053 statement.",
        )
    body = next(iter(root), None)
    matched = _NAMESPACE.match(namespace)
    if matched:
        kind, version = matched.group(1), int(matched.group(2))
    elif body is not None and body.tag in _MESSAGES and not namespace:
        # Some banks drop the namespace; the message element still tells the
        # type, and the version is unknown, so it is read like any other.
        kind, version = _MESSAGES[body.tag], _SUPPORTED_VERSIONS[0]
    else:
        raise StatementError(
            "unsupported_format",
            f"the XML namespace {namespace!r} is not an ISO 20022 camt message; only "
            "camt.053 bank statements are imported.",
        )
    if kind != "053":
        why = _WHY_NOT.get(kind, f"camt.{kind} is not a bank statement")
        raise StatementError(
            "unsupported_format",
            f"{why}, not an end-of-day statement; only camt.053 is imported, because "
            "its booked entries and balances can be checked. Ask the bank for camt.053.",
        )
    if version not in _SUPPORTED_VERSIONS:
        raise StatementError(
            "unsupported_format",
            f"camt.053 version {version} is not supported (versions 2 to 8 are); ask the "
            "bank for one of those versions.",
        )
    if body is None or body.tag != "BkToCstmrStmt":
        raise StatementError(
            "missing_field", "the camt.053 document has no <BkToCstmrStmt> message."
        )
    return body


def _statement(element: Element, errors: list[StatementError], zone: tzinfo) -> Statement:
    statement_id = _text(element, "Id")
    if statement_id is None:
        raise StatementError("missing_field", "a camt.053 <Stmt> has no <Id>.")
    where = f"statement {statement_id}"
    iban = _text(element, "Acct/Id/IBAN")
    other = _text(element, "Acct/Id/Othr/Id")
    balances = {
        _text(bal, "Tp/CdOrPrtry/Cd"): _balance(bal, where, zone) for bal in element.findall("Bal")
    }
    # OPBD is the opening balance; PRCD (previous closing) stands in for it.
    opening = balances.get("OPBD") or balances.get("PRCD")
    closing = balances.get("CLBD")
    entries = [e for e in element.findall("Ntry") if _is_booked(e)]
    currency = _text(element, "Acct/Ccy") or _first_currency(opening, closing, entries)
    if currency is None:
        raise StatementError("missing_field", f"{where}: no account currency <Acct><Ccy>.")
    for label, balance in (("opening", opening), ("closing", closing)):
        if balance is not None and balance.currency != currency:
            errors.append(
                StatementError(
                    "currency_mismatch",
                    f"{where}: the {label} balance is in {balance.currency} but the account "
                    f"is in {currency}; the bank's file is inconsistent, ask for a new one.",
                )
            )
    minter = ReferenceMinter(iban or other)
    # An entry without a booking date was booked on its value date, else on
    # the statement's own date (real daily files carry neither on entries):
    # the day of its closing balance, else the end of its period, else the
    # day it was created.
    created = _text(element, "CreDtTm")
    own_day = (
        (closing.on if closing else None)
        or _period_date(element, "ToDtTm", where, zone)
        or (_moment(created, zone, f"{where}, <CreDtTm>") if created else None)
    )
    lines = distinct_references(
        line
        for index, entry in enumerate(entries, start=1)
        for line in _entry_lines(entry, f"{where}, entry {index}", minter, zone, own_day)
    )
    return Statement(
        format="camt.053",
        statement_id=statement_id,
        account_iban=iban,
        account_number=other,
        currency=currency,
        opening_balance=opening.amount if opening else None,
        closing_balance=closing.amount if closing else None,
        opening_date=opening.on if opening else _period_date(element, "FrDtTm", where, zone),
        closing_date=closing.on if closing else _period_date(element, "ToDtTm", where, zone),
        lines=lines,
    )


def _first_currency(
    opening: _Balance | None, closing: _Balance | None, entries: list[Element]
) -> str | None:
    for balance in (opening, closing):
        if balance is not None:
            return balance.currency
    amount = entries[0].find("Amt") if entries else None
    return amount.get("Ccy") if amount is not None else None


def _balance(element: Element, where: str, zone: tzinfo) -> _Balance:
    amount, currency = _amount(element.find("Amt"), f"{where}, balance")
    # Banks leave <CdtDbtInd> out of balances that are zero or in credit (one
    # bank does on every daily file); ISO 20022 reads an unsigned balance as a
    # credit, so it counts as positive. Only DBIT makes a balance negative.
    indicator = _text(element, "CdtDbtInd") or "CRDT"
    signed = _signed(amount, indicator, f"{where}, balance")
    return _Balance(signed, currency, _date_choice(element.find("Dt"), f"{where}, balance", zone))


def _is_booked(entry: Element) -> bool:
    # Pending (PDNG) and information-only (INFO) entries are not on the account
    # yet and not in its balances, so they are not statement lines.
    status = _text(entry, "Sts/Cd") or _text(entry, "Sts")
    return status in (None, "BOOK")


def _entry_lines(
    entry: Element, where: str, minter: ReferenceMinter, zone: tzinfo, own_day: date | None
) -> list[StatementLine]:
    amount, currency = _amount(entry.find("Amt"), where)
    indicator = _text(entry, "CdtDbtInd")
    signed = _signed(amount, indicator, where)
    value = _date_choice(entry.find("ValDt"), f"{where}, value date", zone)
    booking = _date_choice(entry.find("BookgDt"), f"{where}, booking date", zone)
    booking = booking or value or own_day
    if booking is None:
        raise StatementError(
            "bad_date",
            f"{where} has no booking date <BookgDt>, no value date <ValDt>, and the "
            "statement no creation date <CreDtTm> to fall back to.",
        )
    reversal = (_text(entry, "RvslInd") or "").lower() == "true"
    # Parties keep their roles from the original payment, so a reversed credit
    # still names the payer as debtor.
    incoming = (indicator == "CRDT") != reversal
    common = _Common(
        booking=booking,
        value=value,
        currency=currency,
        incoming=incoming,
        code=_bank_code(entry.find("BkTxCd")),
        info=_text(entry, "AddtlNtryInf"),
    )
    details = entry.findall("NtryDtls/TxDtls")
    entry_ref = _text(entry, "AcctSvcrRef")
    parts = _split(details, signed, currency, incoming, where)
    if parts is None:
        # Zero or one detail block, or a batch whose details do not add up to
        # the entry: one line carrying the booked amount.
        detail = details[0] if len(details) == 1 else None
        reference = entry_ref or (_text(detail, "Refs/AcctSvcrRef") if detail else None)
        return [_line(detail, signed, reference, common, minter)]
    # Each part is a line of its own, so it needs an identity of its own: the
    # detail's reference when every detail has a distinct one (other than the
    # entry's, which Swiss grouped credits repeat on each part), else the
    # entry's reference and the detail's position in the entry.
    own = [_text(detail, "Refs/AcctSvcrRef") for detail, _ in parts]
    distinct = None not in own and entry_ref not in own and len(set(own)) == len(own)
    return [
        _line(
            detail,
            part,
            own[n - 1] if distinct else (f"{entry_ref}/{n}" if entry_ref else None),
            common,
            minter,
        )
        for n, (detail, part) in enumerate(parts, start=1)
    ]


@dataclass(frozen=True, slots=True)
class _Common:
    booking: date
    value: date | None
    currency: str
    incoming: bool
    code: str | None
    info: str | None


def _split(
    details: list[Element], signed: Decimal, currency: str, incoming: bool, where: str
) -> list[tuple[Element, Decimal]] | None:
    """One part per transaction of a batch, when the parts prove the total."""
    if len(details) < 2:
        return None
    parts: list[tuple[Element, Decimal]] = []
    for detail in details:
        element = detail.find("Amt")
        if element is None:
            element = detail.find("AmtDtls/TxAmt/Amt")
        if element is None:
            return None
        amount, part_currency = _amount(element, where)
        if part_currency != currency:
            return None
        indicator = _text(detail, "CdtDbtInd") or ("CRDT" if signed >= 0 else "DBIT")
        parts.append((detail, _signed(amount, indicator, where)))
    if sum((part for _, part in parts), Decimal(0)) != signed:
        return None
    return parts


def _line(
    detail: Element | None,
    amount: Decimal,
    reference: str | None,
    common: _Common,
    minter: ReferenceMinter,
) -> StatementLine:
    end_to_end = _text(detail, "Refs/EndToEndId") if detail is not None else None
    if end_to_end == "NOTPROVIDED":
        end_to_end = None
    name, account = _counterparty(detail, common.incoming)
    remittance = _remittance(detail) or common.info
    code = (_bank_code(detail.find("BkTxCd")) if detail is not None else None) or common.code
    content = (common.booking, common.value, amount, common.currency, end_to_end, name, account,
               remittance, code)  # fmt: skip
    return StatementLine(
        bank_reference=reference or minter.mint(content),
        booking_date=common.booking,
        value_date=common.value,
        amount=amount,
        currency=common.currency,
        end_to_end_id=end_to_end,
        counterparty_name=name,
        counterparty_account=account,
        remittance_info=remittance,
        bank_transaction_code=code,
    )


def _counterparty(detail: Element | None, incoming: bool) -> tuple[str | None, str | None]:
    parties = detail.find("RltdPties") if detail is not None else None
    if parties is None:
        return None, None
    # Money in came from the debtor; money out went to the creditor.
    role = "Dbtr" if incoming else "Cdtr"
    # Version 8 wraps the party in <Pty>; the ultimate party is the fallback.
    name = (
        _text(parties, f"{role}/Nm")
        or _text(parties, f"{role}/Pty/Nm")
        or _text(parties, f"Ultmt{role}/Nm")
        or _text(parties, f"Ultmt{role}/Pty/Nm")
    )
    account = _text(parties, f"{role}Acct/Id/IBAN") or _text(parties, f"{role}Acct/Id/Othr/Id")
    return name, account


def _remittance(detail: Element | None) -> str | None:
    if detail is None:
        return None
    for path in ("RmtInf/Ustrd", "RmtInf/Strd/CdtrRefInf/Ref", "AddtlTxInf"):
        texts = [t.strip() for t in (e.text for e in detail.findall(path)) if t and t.strip()]
        if texts:
            return " ".join(texts)
    return None


def _bank_code(element: Element | None) -> str | None:
    if element is None:
        return None
    domain = _text(element, "Domn/Cd")
    if domain is None:
        return _text(element, "Prtry/Cd")
    family = [_text(element, "Domn/Fmly/Cd"), _text(element, "Domn/Fmly/SubFmlyCd")]
    return "/".join([domain, *(part for part in family if part)])


def _amount(element: Element | None, where: str) -> tuple[Decimal, str]:
    if element is None:
        raise StatementError("missing_field", f"{where} has no amount <Amt>.")
    text = (element.text or "").strip()
    if not _AMOUNT.match(text):
        raise StatementError(
            "bad_amount",
            f"{where}: amount {text!r} is not an unsigned decimal like 123.45.",
        )
    currency = element.get("Ccy", "")
    if not _CURRENCY.match(currency):
        raise StatementError(
            "missing_field", f"{where}: amount has no ISO 4217 currency (Ccy={currency!r})."
        )
    return Decimal(text), currency


def _signed(amount: Decimal, indicator: str | None, where: str) -> Decimal:
    if indicator == "CRDT":
        return amount
    if indicator == "DBIT":
        return -amount
    raise StatementError(
        "missing_field", f"{where}: <CdtDbtInd> is {indicator!r}, expected CRDT or DBIT."
    )


def _date_choice(element: Element | None, where: str, zone: tzinfo) -> date | None:
    """A DateAndDateTimeChoice: <Dt> or <DtTm>."""
    if element is None:
        return None
    day = _text(element, "Dt")
    if day is not None:
        matched = _XS_DATE.match(day)
        return _parse(date.fromisoformat, matched.group(1) if matched else day, where)
    moment = _text(element, "DtTm")
    if moment is None:
        raise StatementError("bad_date", f"{where} has neither <Dt> nor <DtTm>.")
    return _moment(moment, zone, where)


def _moment(text: str, zone: tzinfo, where: str) -> date:
    """The calendar day of an ISO date-time on the account's clock.

    With an offset (`2023-01-15T23:30:00Z`) the instant is converted to the
    account's time zone; without one it is already the bank's local time.
    """
    moment = _parse(datetime.fromisoformat, text, where)
    return (moment.astimezone(zone) if moment.tzinfo is not None else moment).date()


def _period_date(element: Element, name: str, where: str, zone: tzinfo) -> date | None:
    text = _text(element, f"FrToDt/{name}")
    return _moment(text, zone, where) if text else None


def _parse(parse: Callable[[str], _T], text: str, where: str) -> _T:
    try:
        return parse(text)
    except ValueError as exc:
        raise StatementError(
            "bad_date", f"{where}: {text!r} is not an ISO 8601 date (YYYY-MM-DD)."
        ) from exc


def _text(element: Element | None, path: str) -> str | None:
    found = element.find(path) if element is not None else None
    if found is None or found.text is None:
        return None
    return found.text.strip() or None
