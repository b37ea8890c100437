"""NACHA ACH files: a writer for debit collections (PPD for consumers, CCD for
companies) and a reader for return files (entries with a 99 addenda).

Layout (NACHA Operating Rules, 94-character records, blocking factor 10):
file header `1`, per batch a header `5`, entries `6` (each optionally with a
`705` addenda), a batch control `8`; the file control `9`; then lines of
`9`s up to a multiple of 10 records. Controls carry the entry/addenda count,
the entry hash (the sum of the entries' 8-digit RDFI routing numbers, its
last 10 digits), total debits and credits in cents; the file control also
the batch and block counts.

One batch per SEC code (PPD, then CCD), service class 225 (debits only): a
collection file pulls money in; the offsetting credit to the originator's
own account is left to the ODFI (most do it; add it if yours asks). Trace
numbers are the ODFI's 8 digits and a 7-digit sequence over the file, so a
return names the entry by its original trace number.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from adapters.collections.sepa import CollectionFileError

RECORD = 94
BLOCKING = 10
MAX_AMOUNT = Decimal("99999999.99")

RETURN_REASONS = {
    "R01": "insufficient funds",
    "R02": "account closed",
    "R03": "no account / unable to locate account",
    "R04": "invalid account number",
    "R05": "unauthorized debit to consumer account using corporate SEC code",
    "R06": "returned per ODFI's request",
    "R07": "authorization revoked by customer",
    "R08": "payment stopped",
    "R09": "uncollected funds",
    "R10": "customer advises originator is not known or not authorized",
    "R11": "customer advises entry not in accordance with the terms of the authorization",
    "R16": "account frozen",
    "R20": "non-transaction account",
    "R23": "credit entry refused by receiver",
    "R29": "corporate customer advises not authorized",
}

_DEBIT_CODES = {"checking": "27", "savings": "37"}


@dataclass(frozen=True, slots=True)
class AchOriginator:
    """The book's ACH origination details (immediate destination is the ODFI)."""

    odfi_routing: str  # 9 digits
    odfi_name: str
    company_name: str
    company_id: str  # 10 characters, e.g. "1" + EIN
    immediate_origin: str | None = None  # 10 characters; default: the company id


@dataclass(frozen=True, slots=True)
class AchDebit:
    sec: Literal["PPD", "CCD"]
    routing: str  # 9 digits, ABA checksum
    account_number: str
    account_type: Literal["checking", "savings"]
    amount: Decimal  # USD
    name: str  # receiver: individual (PPD) or company (CCD)
    id_number: str  # up to 15 characters, e.g. the invoice number
    addenda: str | None = None  # payment-related information (80 characters at most)


@dataclass(frozen=True, slots=True)
class AchReturn:
    original_trace: str
    return_code: str  # R01, R02, …
    reason: str
    amount: Decimal
    transaction_code: str
    routing: str
    account_number: str
    id_number: str
    name: str
    addenda_info: str


def aba_valid(routing: str) -> bool:
    """The ABA checksum: 3·d1 + 7·d2 + d3 + 3·d4 + … ≡ 0 (mod 10)."""
    if not re.fullmatch(r"\d{9}", routing):
        return False
    weights = (3, 7, 1) * 3
    return sum(int(d) * w for d, w in zip(routing, weights, strict=True)) % 10 == 0


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c if 32 <= ord(c) < 127 else " " for c in folded)


def _alpha(text: str, width: int) -> str:
    return _ascii(text)[:width].upper().ljust(width)


def _num(value: int, width: int) -> str:
    text = str(value)
    if len(text) > width:
        raise CollectionFileError(f"{value} does not fit {width} digits")
    return text.rjust(width, "0")


def _cents(d: AchDebit) -> int:
    if d.amount <= 0 or d.amount > MAX_AMOUNT or d.amount != d.amount.quantize(Decimal("0.01")):
        raise CollectionFileError(
            f"{d.id_number}: an ACH amount is between 0.01 and {MAX_AMOUNT}, in cents",
            id_number=d.id_number,
        )
    return int(d.amount * 100)


def _check(d: AchDebit) -> None:
    if d.sec not in ("PPD", "CCD"):
        raise CollectionFileError(f"SEC code {d.sec!r}: use PPD or CCD")
    if not aba_valid(d.routing):
        raise CollectionFileError(
            f"{d.id_number}: routing number {d.routing!r} fails the ABA checksum",
            id_number=d.id_number,
        )
    if not re.fullmatch(r"[A-Za-z0-9 -]{1,17}", d.account_number):
        raise CollectionFileError(f"{d.id_number}: account number is 1 to 17 letters or digits")
    if d.account_type not in _DEBIT_CODES:
        raise CollectionFileError(f"account type {d.account_type!r}: use checking or savings")
    if not d.name.strip() or not d.id_number.strip() or len(d.id_number) > 15:
        raise CollectionFileError("each debit needs a name and an id number of 1 to 15 characters")
    if d.addenda is not None and len(d.addenda) > 80:
        raise CollectionFileError(f"{d.id_number}: addenda text is at most 80 characters")


def write_nacha(
    originator: AchOriginator,
    debits: Sequence[AchDebit],
    *,
    effective_date: date,
    created_at: datetime,
    file_id_modifier: str = "A",
    description: str = "INVOICE",
    first_trace: int = 1,
) -> str:
    """A NACHA file collecting `debits` (one batch per SEC code, PPD first).

    Trace numbers run from `first_trace` over the file in that order, so a
    caller numbering across files keeps them unique for returns."""
    if not debits:
        raise CollectionFileError("a collection file needs at least one debit")
    if not aba_valid(originator.odfi_routing):
        raise CollectionFileError(f"ODFI routing {originator.odfi_routing!r} fails the checksum")
    if not re.fullmatch(r"[A-Z0-9]", file_id_modifier):
        raise CollectionFileError("the file id modifier is one letter A-Z or digit")
    company_id = originator.company_id.rjust(10)[:10]
    origin = (originator.immediate_origin or company_id).rjust(10)[:10]
    odfi8 = originator.odfi_routing[:8]
    lines = [
        "101"
        + " " + originator.odfi_routing
        + origin
        + created_at.strftime("%y%m%d%H%M")
        + file_id_modifier
        + "094" + "10" + "1"
        + _alpha(originator.odfi_name, 23)
        + _alpha(originator.company_name, 23)
        + " " * 8
    ]  # fmt: skip
    for d in debits:
        _check(d)
    batches = [(sec, [d for d in debits if d.sec == sec]) for sec in ("PPD", "CCD")]
    trace = first_trace - 1
    file_hash = file_debit = file_count = batch_count = 0
    for sec, entries in batches:
        if not entries:
            continue
        batch_count += 1
        lines.append(
            "5225"
            + _alpha(originator.company_name, 16)
            + " " * 20
            + company_id
            + sec
            + _alpha(description, 10)
            + " " * 6
            + effective_date.strftime("%y%m%d")
            + "   "
            + "1"
            + odfi8
            + _num(batch_count, 7)
        )
        entry_hash = debit_total = count = 0
        for d in entries:
            trace += 1
            cents = _cents(d)
            trace_number = odfi8 + _num(trace, 7)
            lines.append(
                "6"
                + _DEBIT_CODES[d.account_type]
                + d.routing
                + d.account_number.ljust(17)
                + _num(cents, 10)
                + _alpha(d.id_number, 15)
                + _alpha(d.name, 22)
                + "  "
                + ("1" if d.addenda else "0")
                + trace_number
            )
            count += 1
            entry_hash += int(d.routing[:8])
            debit_total += cents
            if d.addenda:
                lines.append("705" + _ascii(d.addenda).ljust(80) + "0001" + _num(trace, 7))
                count += 1
        lines.append(
            "8225"
            + _num(count, 6)
            + _num(entry_hash % 10**10, 10)
            + _num(debit_total, 12)
            + _num(0, 12)
            + company_id
            + " " * 19
            + " " * 6
            + odfi8
            + _num(batch_count, 7)
        )
        file_hash += entry_hash
        file_debit += debit_total
        file_count += count
    records = len(lines) + 1
    blocks = -(-records // BLOCKING)
    lines.append(
        "9"
        + _num(batch_count, 6)
        + _num(blocks, 6)
        + _num(file_count, 8)
        + _num(file_hash % 10**10, 10)
        + _num(file_debit, 12)
        + _num(0, 12)
        + " " * 39
    )
    lines.extend(["9" * RECORD] * (blocks * BLOCKING - records))
    for line in lines:
        assert len(line) == RECORD, line  # a layout bug, never input
    return "\n".join(lines) + "\n"


# --- returns ---------------------------------------------------------------------------


def _records(data: bytes | str) -> list[tuple[int, str]]:
    try:
        text = data.decode("ascii") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise CollectionFileError("a NACHA file is ASCII text") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) != RECORD:
            raise CollectionFileError(
                f"line {number} has {len(line)} characters, not {RECORD}", line=number
            )
        out.append((number, line))
    if not out or out[0][1][0] != "1":
        raise CollectionFileError("not a NACHA file: it must start with a file header (1)")
    return out


def parse_nacha_returns(data: bytes | str) -> list[AchReturn]:
    """The returned entries of a NACHA file: each entry followed by a `799` addenda."""
    found: list[AchReturn] = []
    entry: tuple[int, str] | None = None
    in_batch = False
    for number, line in _records(data):
        kind = line[0]
        if kind == "5":
            in_batch, entry = True, None
        elif kind == "6":
            if not in_batch:
                raise CollectionFileError(f"line {number}: an entry outside a batch", line=number)
            entry = (number, line)
        elif kind == "7":
            if entry is None:
                raise CollectionFileError(f"line {number}: an addenda without its entry")
            if line[1:3] == "99":
                found.append(_return(entry[1], line, number))
        elif kind == "8":
            in_batch, entry = False, None
        elif kind not in "19":
            raise CollectionFileError(f"line {number}: unknown record type {kind!r}", line=number)
    if not found:
        raise CollectionFileError("the file holds no return entry (no 99 addenda)")
    return found


def _return(entry: str, addenda: str, number: int) -> AchReturn:
    code = addenda[3:6]
    amount_text = entry[29:39]
    if not re.fullmatch(r"R\d\d", code) or not amount_text.isdigit():
        raise CollectionFileError(
            f"line {number}: malformed return addenda or entry amount", line=number
        )
    return AchReturn(
        original_trace=addenda[6:21].strip(),
        return_code=code,
        reason=RETURN_REASONS.get(code, "other return reason"),
        amount=Decimal(int(amount_text)) / 100,
        transaction_code=entry[1:3],
        routing=entry[3:12],
        account_number=entry[12:29].strip(),
        id_number=entry[39:54].strip(),
        name=entry[54:76].strip(),
        addenda_info=addenda[35:79].strip(),
    )
