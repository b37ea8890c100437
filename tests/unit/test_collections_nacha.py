"""NACHA: PPD and CCD debit files with exact controls, entry hash and blocking,
checked by our own invariants and by an independent parser (achkit); return files
(R01, R03, …) read from real files; malformed files refused."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import achkit  # type: ignore[import-untyped]
import pytest

from adapters.collections.nacha import (
    AchDebit,
    AchOriginator,
    AchReturn,
    aba_valid,
    parse_nacha_returns,
    write_nacha,
)
from adapters.collections.sepa import CollectionFileError

NACHA = Path("/work/shared/fixtures/third_party/nacha")
D = Decimal
ORIGINATOR = AchOriginator("091000019", "WELLS FARGO", "Active Billing", "1234567890")


def _debit(n: int, sec: str, amount: str, routing: str = "011401533") -> AchDebit:
    return AchDebit(
        sec=sec,  # type: ignore[arg-type]
        routing=routing,
        account_number=f"00{n}123",
        account_type="checking" if n % 2 else "savings",
        amount=D(amount),
        name=f"Customer {n} Ünïcode",
        id_number=f"INV-{n:05d}",
        addenda="Invoice INV-00002" if n == 2 else None,
    )


DEBITS = [
    _debit(1, "PPD", "108.00"),
    _debit(2, "CCD", "1500.50", "091000019"),
    _debit(3, "PPD", "0.01", "021000021"),
]


def _write(debits: list[AchDebit] = DEBITS) -> str:
    return write_nacha(
        ORIGINATOR, debits, effective_date=date(2026, 2, 5), created_at=datetime(2026, 2, 1, 9, 30)
    )


def test_file_layout_controls_hash_and_blocking() -> None:
    text = _write()
    lines = text.splitlines()
    assert all(len(line) == 94 for line in lines)
    assert len(lines) % 10 == 0
    kinds = "".join(line[0] for line in lines)
    # header, PPD batch (2 entries), CCD batch (entry + addenda), file control: 10 records
    assert kinds == "15668" + "5678" + "9"
    padded = _write(DEBITS[:1]).splitlines()  # 5 records, padded with five lines of 9s
    assert [line[0] for line in padded] == list("1568") + ["9"] * 6
    assert padded[5:] == ["9" * 94] * 5 and padded[4][7:13] == "000001"
    ppd_control, ccd_control, file_control = lines[4], lines[8], lines[9]
    assert lines[1][50:53] == "PPD" and lines[5][50:53] == "CCD"
    assert lines[1][1:4] == "225"  # debits only
    # PPD: 2 entries; hash 01140153 + 02100002 = 0003240155; debits 108.00 + 0.01
    assert ppd_control[4:10] == "000002"
    assert ppd_control[10:20] == "0003240155"
    assert ppd_control[20:32] == "000000010801" and ppd_control[32:44] == "0" * 12
    # CCD: entry + addenda; hash 09100001
    assert ccd_control[4:10] == "000002" and ccd_control[10:20] == "0009100001"
    assert ccd_control[20:32] == "000000150050"
    # file: 2 batches, 1 block, 4 entries+addenda, hash 12340156, 1608.51 debited
    assert file_control[1:7] == "000002" and file_control[7:13] == "000001"
    assert file_control[13:21] == "00000004" and file_control[21:31] == "0012340156"
    assert file_control[31:43] == "000000160851" and file_control[43:55] == "0" * 12
    assert (lines[2][1:3], lines[3][1:3], lines[6][1:3]) == ("27", "27", "37")  # checking, savings
    assert lines[2][54:76] == "CUSTOMER 1 UNICODE    "  # ASCII, upper case
    assert lines[7].startswith("705Invoice INV-00002") and lines[7].endswith("00010000003")
    assert lines[3][79:94] == "091000010000002"  # trace: ODFI 8 digits + sequence


def test_an_independent_parser_accepts_the_file() -> None:
    result = achkit.validate(_write())
    assert result == {"ok": True, "errors": []}
    parsed = achkit.parse(_write())
    assert [b["sec"] for b in parsed["batches"]] == ["PPD", "CCD"]
    assert sum(e["amount_cents"] for b in parsed["batches"] for e in b["entries"]) == 160851


def test_entry_hash_keeps_the_last_ten_digits_and_blocks_grow() -> None:
    many = [_debit(n, "PPD", "1.00", "091000019") for n in range(1, 1300)]
    text = _write(many)
    lines = text.splitlines()
    assert len(lines) % 10 == 0 and all(len(x) == 94 for x in lines)
    control = next(x for x in lines if x.startswith("9") and not x.startswith("99"))
    assert control[21:31] == _tail(9100001 * 1299)
    assert int(control[7:13]) == len(lines) // 10
    assert achkit.validate(text)["ok"]


def _tail(total: int) -> str:
    return str(total % 10**10).rjust(10, "0")


@pytest.mark.parametrize(
    "bad",
    [
        [],
        [_debit(1, "PPD", "10.00", "011401534")],  # checksum
        [_debit(1, "PPD", "10.001")],
        [_debit(1, "PPD", "0")],
        [_debit(1, "WEB", "10.00")],
    ],
)
def test_bad_debits_are_refused(bad: list[AchDebit]) -> None:
    with pytest.raises(CollectionFileError):
        _write(bad)


def test_aba_checksum() -> None:
    assert aba_valid("011401533") and aba_valid("091000019") and aba_valid("021000021")
    assert not aba_valid("011401534") and not aba_valid("12345678") and not aba_valid("0114015a3")


def test_return_file_r01_and_r03() -> None:
    found = parse_nacha_returns((NACHA / "moov-ach__return-WEB.ach").read_bytes())
    assert found == [
        AchReturn("091400600000001", "R01", "insufficient funds", D("123.54"), "26",
                  "091400606", "123456789", "MjMxNDAwMjAtOGQ", "Paul Jones", ""),
        AchReturn("091400600000003", "R03", "no account / unable to locate account",
                  D("45.65"), "21", "091400606", "867530999999", "NmRjZTJmMzItMGN",
                  "Bob Marley", ""),
    ]  # fmt: skip


def test_our_own_returned_entry_round_trips() -> None:
    text = _write([_debit(1, "PPD", "108.00")]).splitlines()
    entry = "626" + text[2][3:78] + "1" + "091000010000009"
    addenda = ("799R10" + text[2][79:94] + " " * 6 + "01140153" + "NOT AUTHORIZED".ljust(44)
               + "091000010000009")  # fmt: skip
    returned = "\n".join([text[0], text[1], entry, addenda, text[3], text[4]])
    (r,) = parse_nacha_returns(returned)
    assert (r.original_trace, r.return_code, r.amount, r.id_number) == (
        "091000010000001",
        "R10",
        D("108.00"),
        "INV-00001",
    )


@pytest.mark.parametrize(
    "name", ["moov-ach__web-debit.ach", "moov-ach__cor-example.ach", "moov-ach__20110805A.ach"]
)
def test_files_without_returns_are_refused(name: str) -> None:
    with pytest.raises(CollectionFileError, match="no return entry"):
        parse_nacha_returns((NACHA / name).read_bytes())


def test_malformed_return_files_are_refused() -> None:
    good = (NACHA / "moov-ach__return-WEB.ach").read_text()
    for broken in (
        "",
        "hello",
        good.replace("Paul Jones ", "Paul Jones"),  # a short record
        good.replace("799R01", "799X01"),
        good.replace("0000012354", "00000123x4"),
        "\n".join(line for line in good.splitlines() if not line.startswith("5")),
        good.replace("626091400606", "Z26091400606"),
    ):
        with pytest.raises(CollectionFileError):
            parse_nacha_returns(broken)
    with pytest.raises(CollectionFileError):
        parse_nacha_returns("ü".encode() * 94)
