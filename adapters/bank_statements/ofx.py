"""OFX 1.x (SGML) and 2.x (XML) bank and credit-card statements.

Hand-written rather than built on `ofxtools`: tried on the fixtures, ofxtools
enforces the spec's field lengths and header exactly, so it rejects real bank
files (a 10-digit BANKID, header-less exports) and returns an empty list for
an error response instead of reporting it. Reconciliation needs the opposite:
read what banks actually send, and fail with a clear message when it matters.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date
from decimal import Decimal

from ._sgml import Node, build_tree
from .model import ReferenceMinter, Statement, StatementError, StatementLine, distinct_references
from .validation import collect_errors

_STATEMENTS = {"STMTRS": "BANKACCTFROM", "CCSTMTRS": "CCACCTFROM"}
_WRAPPERS = {"STMTTRNRS": "STMTRS", "CCSTMTTRNRS": "CCSTMTRS"}
# OFX datetimes: YYYYMMDD[HHMMSS[.XXX]][[gmt offset[:tz name]]].
_DATETIME = re.compile(
    r"^(?P<day>\d{8})(?P<time>\d{4}(\d{2}(\.\d{1,6})?)?)?(\[[+-]?\d+(\.\d+)?(:[A-Za-z]+)?\])?$"
)
# Some banks write a decimal comma; thousands separators are not allowed.
_AMOUNT = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_ENCODINGS = {"1252": "cp1252", "USASCII": "ascii", "UTF-8": "utf-8", "NONE": "utf-8"}


def parse_ofx(data: bytes) -> list[Statement]:
    """Parse and check; raise the first problem found."""
    statements, errors = read_ofx(data)
    if errors:
        raise errors[0]
    return statements


def read_ofx(data: bytes) -> tuple[list[Statement], list[StatementError]]:
    """Parse, returning statements and every problem they show.

    Raises StatementError when the file cannot be read or is an error response.
    """
    ofx = build_tree(_decode(data))
    _check_status(ofx.find("SIGNONMSGSRSV1/SONRS"), "sign-on")
    for wrapper, inner in _WRAPPERS.items():
        for response in ofx.iter(wrapper):
            if response.find(inner) is None:
                _check_status(response, f"statement request {response.value('TRNUID')}")
    statements = [
        _statement(node, account_tag)
        for tag, account_tag in _STATEMENTS.items()
        for node in ofx.iter(tag)
    ]
    if not statements:
        raise StatementError(
            "no_statements",
            "the OFX file holds no bank or card statement (<STMTRS> or <CCSTMTRS>); "
            "download it again with an account and a date range selected.",
        )
    return statements, collect_errors(statements, [])


def _decode(data: bytes) -> str:
    head = data[:1024].decode("ascii", errors="replace")
    declared = re.search(r"encoding=[\"']([A-Za-z0-9_.-]+)", head) or re.search(
        r"^CHARSET:\s*(\S+)", head, re.MULTILINE
    )
    encoding = _ENCODINGS.get(declared.group(1).upper(), declared.group(1)) if declared else None
    # UTF-8 first: exports often declare CHARSET:1252 over UTF-8 text, and
    # cp1252 text with any accent almost never happens to be valid UTF-8.
    for candidate in ("utf-8", encoding, "cp1252"):
        if candidate is None:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")  # every byte decodes; the tags are ASCII anyway


def _check_status(response: Node | None, what: str) -> None:
    if response is None:
        return
    code = response.value("STATUS/CODE")
    if code not in (None, "0") and response.value("STATUS/SEVERITY") == "ERROR":
        message = response.value("STATUS/MESSAGE") or "no message"
        raise StatementError(
            "ofx_error_response",
            f"the bank answered the {what} with error {code} ({message}); the file holds "
            "no statement. Download it again later or contact the bank.",
        )


def _statement(node: Node, account_tag: str) -> Statement:
    account = node.value(f"{account_tag}/ACCTID")
    where = f"OFX statement for account {account or '(no ACCTID)'}"
    minter = ReferenceMinter(account)
    default_currency = _currency(node.value("CURDEF"), where)
    transactions = list(node.iter("STMTTRN"))
    lines = [
        _line(trn, default_currency, f"{where}, transaction {n}", minter)
        for n, trn in enumerate(transactions, start=1)
    ]
    # An empty CURDEF is tolerated when the lines name their currency.
    currencies = {line.currency for line in lines if line.currency}
    currency = default_currency or (currencies.pop() if len(currencies) == 1 else None)
    if currency is None:
        raise StatementError(
            "missing_field", f"{where}: no currency in <CURDEF>; export the file again."
        )
    lines = list(distinct_references(lines))
    closing, closing_date = _ledger_balance(node.find("LEDGERBAL"), where)
    # OFX reports only the ledger balance at the end; the balance before the
    # first line is that minus the lines, so the statement still chains.
    opening = (
        None if closing is None else closing - sum((line.amount for line in lines), Decimal(0))
    )
    opening_date = _optional_date(node.value("BANKTRANLIST/DTSTART"), where)
    end_date = _optional_date(node.value("BANKTRANLIST/DTEND"), where)
    return Statement(
        format="ofx",
        statement_id=None,  # OFX gives statements no id; lines carry FITIDs
        account_iban=None,
        account_number=account,
        currency=currency,
        opening_balance=opening,
        closing_balance=closing,
        opening_date=opening_date,
        closing_date=closing_date or end_date,
        lines=tuple(line if line.currency else replace(line, currency=currency) for line in lines),
    )


def _line(
    trn: Node, default_currency: str | None, where: str, minter: ReferenceMinter
) -> StatementLine:
    # The amount first: a transaction with several faults reports its money.
    amount = _amount(trn.value("TRNAMT"), f"{where}, <TRNAMT>")
    posted = _date(trn.value("DTPOSTED"), f"{where}, <DTPOSTED>")
    available = _optional_date(trn.value("DTAVAIL"), where)
    # <CURRENCY> means the amount is in that currency; <ORIGCURRENCY> means it
    # was already converted to the statement's default currency.
    currency = _currency(trn.value("CURRENCY/CURSYM"), where) or default_currency or ""
    name = trn.value("NAME") or trn.value("PAYEE/NAME")
    account = trn.value("BANKACCTTO/ACCTID") or trn.value("CCACCTTO/ACCTID")
    memo = trn.value("MEMO")
    code = (trn.value("TRNTYPE") or "").upper() or None
    content = (posted, available, amount, currency, name, account, memo, code,
               trn.value("CHECKNUM"), trn.value("REFNUM"))  # fmt: skip
    return StatementLine(
        bank_reference=trn.value("FITID") or minter.mint(content),
        booking_date=posted,
        value_date=available,
        amount=amount,
        currency=currency,
        end_to_end_id=None,
        counterparty_name=name,
        counterparty_account=account,
        remittance_info=memo,
        bank_transaction_code=code,
    )


def _ledger_balance(node: Node | None, where: str) -> tuple[Decimal | None, date | None]:
    if node is None:
        return None, None
    amount, as_of = node.value("BALAMT"), node.value("DTASOF")
    # A wholly empty <LEDGERBAL> is how some exports say "no balance"; an
    # amount missing next to its date is a broken balance.
    if amount is None and as_of is None:
        return None, None
    return _amount(amount, f"{where}, <LEDGERBAL><BALAMT>"), _optional_date(as_of, where)


def _amount(text: str | None, where: str) -> Decimal:
    if text is None:
        raise StatementError("bad_amount", f"{where} is empty; it must hold an amount.")
    if not _AMOUNT.match(text):
        raise StatementError(
            "bad_amount", f"{where}: {text!r} is not a decimal amount like -123.45."
        )
    return Decimal(text.replace(",", "."))


def _date(text: str | None, where: str) -> date:
    if text is None:
        raise StatementError("bad_date", f"{where} is missing; each transaction needs one.")
    matched = _DATETIME.match(text)
    try:
        if matched is None:
            raise ValueError(text)
        day = matched.group("day")
        time = (matched.group("time") or "000000")[:6].ljust(6, "0")
        if int(time[:2]) > 23 or int(time[2:4]) > 59 or int(time[4:6]) > 60:
            raise ValueError(text)
        # The calendar day as the bank wrote it, in the bank's own time zone.
        return date(int(day[:4]), int(day[4:6]), int(day[6:8]))
    except ValueError as exc:
        raise StatementError(
            "bad_date",
            f"{where}: {text!r} is not an OFX date like 20230115 or 20230115120000[-5:EST].",
        ) from exc


def _optional_date(text: str | None, where: str) -> date | None:
    return _date(text, where) if text is not None else None


def _currency(text: str | None, where: str) -> str | None:
    if text is None:
        return None
    if not _CURRENCY.match(text.upper()):
        raise StatementError("missing_field", f"{where}: {text!r} is not an ISO 4217 currency.")
    return text.upper()
