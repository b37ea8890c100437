"""Bank-statement parsers against real third-party files and small hand-made ones."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.bank_statements import (
    CsvMapping,
    Statement,
    StatementError,
    StatementLine,
    detect_format,
    parse_camt053,
    parse_csv,
    parse_ofx,
    parse_statement,
    read_camt053,
    read_ofx,
    validate_statement,
)

# The shared fixtures sit beside the checkout (../shared), or beside the folder
# of worktrees holding it (../../shared).
FIXTURES = next(
    (
        found
        for parent in Path(__file__).resolve().parents[2].parents
        if (found := parent / "shared" / "fixtures" / "third_party").is_dir()
    ),
    Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "third_party",
)
CAMT = FIXTURES / "genkgo-camt"
OFX = FIXTURES / "ofxparse"

# Every camt.053 fixture, with the problems read_camt053 reports (in order);
# parse_camt053 raises the first. The genkgo files are unit-test data, not
# real statements: most carry a closing balance in another currency (SEK or
# JPY on a EUR account) or balances their one entry does not add up to.
CAMT053_PROBLEMS: dict[str, tuple[str, ...]] = {
    "camt053.v2.all-balance-types.xml": ("unbalanced_statement",),  # 1.01 + 8.85 != 4.04
    "camt053.v2.five.decimals.xml": ("unbalanced_statement",),  # 18.150 + 8.850 != 27.050
    "camt053.v2.minimal.ultimate.xml": ("currency_mismatch", "unbalanced_statement"),
    "camt053.v2.minimal.xml": ("currency_mismatch", "unbalanced_statement"),
    "camt053.v2.multi.statement.xml": (),
    "camt053.v2.with-account-name.xml": (),  # no OPBD/CLBD, so nothing to check
    "camt053.v2.with-party-ids.xml": ("currency_mismatch", "unbalanced_statement"),
    "camt053.v3.xml": ("currency_mismatch", "unbalanced_statement"),
    "camt053.v4.xml": ("currency_mismatch", "unbalanced_statement"),
    "camt053.v8.xml": ("currency_mismatch", "unbalanced_statement"),
}
# Files that cannot be read at all: the error read_camt053 raises.
CAMT053_UNREADABLE = {"camt053.v2.wrong.xml": "no_statements"}  # BkToCstmrStmt without Stmt

# None: parses cleanly. Otherwise the StatementError code, on purpose.
OFX_OUTCOME: dict[str, str | None] = {
    "anzcc.ofx": None,  # XML header but SGML-style unclosed tags
    "bank_medium.ofx": None,
    "bank_small.ofx": "no_statements",  # <OFX></OFX>: nothing to import
    "checking.ofx": None,
    "error_message.ofx": "ofx_error_response",  # STATUS 2000 "General Server Error"
    "fail_nice_date_missing.ofx": "bad_date",  # STMTTRN without DTPOSTED
    "fail_nice_decimal_error.ofx": "bad_amount",  # TRNAMT "$120"
    "fail_nice_empty_balance.ofx": "bad_amount",  # LEDGERBAL with a date but no BALAMT
    "multiple_accounts.ofx": None,
    "multiple_accounts2.ofx": None,
    "ofx-v102-empty-tags.ofx": None,  # empty FITID, CURDEF and LEDGERBAL are tolerated
    "suncorp.ofx": None,  # CDATA sections
}


def _names(folder: Path, pattern: str) -> set[str]:
    return {path.name for path in folder.glob(pattern)}


def test_every_fixture_file_has_an_expectation() -> None:
    assert CAMT.is_dir() and OFX.is_dir(), f"fixtures not found at {FIXTURES}"
    assert _names(CAMT, "camt053*.xml") == set(CAMT053_PROBLEMS) | set(CAMT053_UNREADABLE)
    assert _names(OFX, "*.ofx") == set(OFX_OUTCOME)


# --- camt.053 fixtures ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CAMT053_PROBLEMS))
def test_camt053_fixture_strict_parse(name: str) -> None:
    data = (CAMT / name).read_bytes()
    problems = CAMT053_PROBLEMS[name]
    statements, errors = read_camt053(data)
    assert tuple(error.code for error in errors) == problems
    for parse in (parse_camt053, parse_statement):  # detection must land on camt.053
        if problems:
            with pytest.raises(StatementError) as raised:
                parse(data)
            assert raised.value.code == problems[0]
        else:
            assert parse(data) == statements


@pytest.mark.parametrize("name", sorted(CAMT053_UNREADABLE))
def test_camt053_fixture_unreadable(name: str) -> None:
    data = (CAMT / name).read_bytes()
    with pytest.raises(StatementError) as raised:
        read_camt053(data)
    assert raised.value.code == CAMT053_UNREADABLE[name]
    with pytest.raises(StatementError) as detected:
        parse_statement(data)
    assert detected.value.code == CAMT053_UNREADABLE[name]


@pytest.mark.parametrize("name", sorted(CAMT053_PROBLEMS))
def test_camt053_fixture_values_match_the_authors_parse(name: str) -> None:
    statements, errors = read_camt053((CAMT / name).read_bytes())
    expected = json.loads((CAMT / name).with_suffix(".json").read_text())
    checked = 0
    for entry in expected["getEntries"]:
        record = entry["getRecord"]
        if not isinstance(record, dict):
            continue
        statement = next(s for s in statements if s.statement_id == record["getId"])
        assert statement.account == record["getAccount"]["getIdentification"]
        if isinstance(record["getEntries"], list):
            assert len(statement.lines) == len(record["getEntries"])
        _check_balances(statement, record["getBalances"], [e.code for e in errors])
        _check_line(statement.lines[entry["getIndex"]], entry)
        checked += 1
    assert checked, "the JSON should describe at least one entry"


def _money(money: dict[str, Any]) -> tuple[Decimal, str]:
    # The JSON holds Money objects in minor units.
    currency = money["getCurrency"]["getCode"]
    exponent = {"JPY": 0}.get(currency, 2)
    return Decimal(money["getAmount"]).scaleb(-exponent), currency


def _day(value: dict[str, str] | None) -> date | None:
    return date.fromisoformat(value["0"][:10]) if value else None


def _check_balances(statement: Statement, balances: list[Any], codes: list[str]) -> None:
    # genkgo calls both OPBD and PRCD "opening"; ours is OPBD when present, the first.
    for kind, ours, on in (
        ("opening", statement.opening_balance, statement.opening_date),
        ("closing", statement.closing_balance, statement.closing_date),
    ):
        theirs = next((b for b in balances if b["getType"] == kind), None)
        if theirs is None:
            assert ours is None
            continue
        amount, currency = _money(theirs["getAmount"])
        assert ours == amount
        assert on == _day(theirs["getDate"])
        if currency != statement.currency:
            assert "currency_mismatch" in codes


def _check_line(line: StatementLine, entry: dict[str, Any]) -> None:
    amount, currency = _money(entry["getAmount"])
    assert (line.amount, line.currency) == (amount, currency)
    assert line.booking_date == _day(entry["getBookingDate"])
    assert line.value_date == _day(entry["getValueDate"])
    if entry["getAccountServicerReference"]:
        assert line.bank_reference == entry["getAccountServicerReference"]
    else:
        assert line.bank_reference.startswith("sha256:")
    detail = entry["getTransactionDetail"] or {}
    reference = detail.get("getReference") or {}
    assert line.end_to_end_id == reference.get("getEndToEndId")
    remittance = detail.get("getRemittanceInformation") or {}
    if remittance.get("getMessage"):
        assert line.remittance_info == remittance["getMessage"]
    code = entry["getBankTransactionCode"] or {}
    if code.get("getDomain"):
        assert line.bank_transaction_code is not None
        assert line.bank_transaction_code.startswith(code["getDomain"]["getCode"] + "/")
    elif code.get("getProprietary"):
        assert line.bank_transaction_code == code["getProprietary"]["getCode"]


def test_camt053_multi_statement_file_gives_each_statement() -> None:
    statements = parse_camt053((CAMT / "camt053.v2.multi.statement.xml").read_bytes())
    assert [s.statement_id for s in statements] == [
        "253EURNL26VAYB8060476890",
        "254EURNL26VAYB8060476890",
    ]
    first, second = statements
    assert (first.opening_balance, first.closing_balance) == (Decimal("18.15"), Decimal("27.00"))
    assert [line.amount for line in first.lines] == [Decimal("8.85")]
    assert (second.opening_balance, second.closing_balance) == (Decimal("27.00"), Decimal("20.00"))
    debit = second.lines[0]
    assert debit.amount == Decimal("-7.00")
    assert debit.end_to_end_id == "000000002"
    assert debit.counterparty_name == "Company Name 2"  # money out: the creditor
    assert debit.counterparty_account == "NL56AGDH9619008421"
    assert debit.remittance_info == "Transaction Description 2"


def test_camt053_v8_reads_datetime_booking_and_party_wrappers() -> None:
    (statement,), _ = read_camt053((CAMT / "camt053.v8.xml").read_bytes())
    line = statement.lines[0]
    assert line.booking_date == date(2014, 12, 31)  # from <DtTm>2014-12-31T13:15:00+01:00
    assert line.bank_reference == "AAAASESS-FP-CN_98765/01"
    assert line.end_to_end_id == "MUELL/FINP/RA12345"
    assert line.counterparty_name == "NAME NAME"  # <Dbtr><Pty><Nm>
    assert line.bank_transaction_code == "PMNT/RCDT/BOOK"


@pytest.mark.parametrize("name", sorted(_names(CAMT, "camt05[24]*.xml")))
def test_camt052_and_camt054_are_rejected_as_unsupported(name: str) -> None:
    with pytest.raises(StatementError) as raised:
        parse_statement((CAMT / name).read_bytes())
    assert raised.value.code == "unsupported_format"
    assert "camt.053" in raised.value.message


# --- OFX fixtures ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OFX_OUTCOME))
def test_ofx_fixture(name: str) -> None:
    data = (OFX / name).read_bytes()
    code = OFX_OUTCOME[name]
    if code is None:
        statements = parse_ofx(data)
        assert statements
        assert parse_statement(data) == statements
        return
    for parse in (parse_ofx, parse_statement):
        with pytest.raises(StatementError) as raised:
            parse(data)
        assert raised.value.code == code


def test_ofx_sgml_bank_statement_values() -> None:
    (statement,) = parse_ofx((OFX / "bank_medium.ofx").read_bytes())
    assert (statement.account_number, statement.currency) == ("12300 000012345678", "CAD")
    assert statement.closing_balance == Decimal("382.34")
    assert statement.closing_date == date(2009, 5, 23)
    assert statement.opening_date == date(2009, 4, 1)
    assert [(x.bank_reference, x.booking_date, x.amount) for x in statement.lines] == [
        ("0000123456782009040100001", date(2009, 4, 1), Decimal("-6.60")),
        ("0000123456782009040200004", date(2009, 4, 2), Decimal("-316.67")),
        ("0000123456782009040300005", date(2009, 4, 3), Decimal("-22.00")),
    ]
    assert statement.lines[1].counterparty_name == "Joe's Bald Hairstyles"
    assert statement.lines[1].bank_transaction_code == "CHECK"


def test_ofx_credit_card_statement() -> None:
    (statement,) = parse_ofx((OFX / "anzcc.ofx").read_bytes())
    assert (statement.account_number, statement.currency) == ("1234123412341234", "AUD")
    assert statement.closing_balance == Decimal("-123.45")
    (line,) = statement.lines
    assert (line.bank_reference, line.amount, line.remittance_info) == (
        "201705080001",
        Decimal("-5.50"),
        "SOME MEMO",
    )


def test_ofx_multiple_accounts_give_one_statement_each() -> None:
    statements = parse_ofx((OFX / "multiple_accounts.ofx").read_bytes())
    assert [(s.account_number, s.closing_balance, s.lines) for s in statements] == [
        ("9100", Decimal("111"), ()),
        ("9200", Decimal("222"), ()),
    ]


def test_ofx_cdata_and_xml_closing_tags() -> None:
    (statement,) = parse_ofx((OFX / "suncorp.ofx").read_bytes())
    assert statement.lines[0].counterparty_name == "EFTPOS WDL HANDYWAY ALDI STORE"
    assert statement.closing_balance == Decimal("1234.12")


def test_ofx_empty_tags_fall_back_to_line_currency_and_content_reference() -> None:
    (statement,) = parse_ofx((OFX / "ofx-v102-empty-tags.ofx").read_bytes())
    assert statement.currency == "AUD"  # CURDEF is empty; the line's CURRENCY says AUD
    assert statement.closing_balance is None  # LEDGERBAL is wholly empty
    (line,) = statement.lines
    assert line.bank_reference.startswith("sha256:")  # FITID is empty
    assert line.amount == Decimal("12.34")


def test_ofx_error_response_names_the_bank_error() -> None:
    with pytest.raises(StatementError) as raised:
        parse_ofx((OFX / "error_message.ofx").read_bytes())
    assert "2000" in raised.value.message and "General Server Error" in raised.value.message


# --- hand-made files for the failure paths ----------------------------------------------


def _ofx(dtposted: str, fitid: str = "F1", extra: str = "") -> bytes:
    return f"""OFXHEADER:100
DATA:OFXSGML
VERSION:102

<OFX><BANKMSGSRSV1><STMTTRNRS><TRNUID>1<STATUS><CODE>0<SEVERITY>INFO</STATUS>
<STMTRS><CURDEF>EUR<BANKACCTFROM><BANKID>1<ACCTID>ACC-1<ACCTTYPE>CHECKING</BANKACCTFROM>
<BANKTRANLIST><DTSTART>20230101<DTEND>20230131
<STMTTRN><TRNTYPE>CREDIT<DTPOSTED>{dtposted}<TRNAMT>100.00<FITID>{fitid}<NAME>Acme</STMTTRN>
{extra}</BANKTRANLIST><LEDGERBAL><BALAMT>100.00<DTASOF>20230131</LEDGERBAL>
</STMTRS></STMTTRNRS></BANKMSGSRSV1></OFX>
""".encode()


@pytest.mark.parametrize(
    "dtposted",
    ["20230115", "202301151200", "20230115120000", "20230115120000.000[-5:EST]", "20230115[0]"],
)
def test_ofx_date_forms(dtposted: str) -> None:
    (statement,) = parse_ofx(_ofx(dtposted))
    assert statement.lines[0].booking_date == date(2023, 1, 15)


@pytest.mark.parametrize("dtposted", ["20230230", "2023-01-15", "20231315", "20230115250000", ""])
def test_ofx_broken_date(dtposted: str) -> None:
    with pytest.raises(StatementError) as raised:
        parse_statement(_ofx(dtposted))
    assert raised.value.code == "bad_date"
    assert "DTPOSTED" in raised.value.message


def test_ofx_truncated_file() -> None:
    data = (OFX / "checking.ofx").read_bytes()
    with pytest.raises(StatementError) as raised:
        parse_ofx(data[: len(data) // 2])
    assert raised.value.code == "truncated_file"


def test_ofx_identical_lines_without_fitid_get_distinct_stable_references() -> None:
    twin = "<STMTTRN><TRNTYPE>CREDIT<DTPOSTED>20230115<TRNAMT>100.00<FITID><NAME>Acme</STMTTRN>"
    data = _ofx("20230115", fitid="", extra=twin)
    first = [line.bank_reference for line in parse_ofx(data)[0].lines]
    assert len(set(first)) == 2
    assert first == [line.bank_reference for line in parse_ofx(data)[0].lines]


def _camt053(*entries: str, opening: str = "100.00", closing: str = "120.00") -> bytes:
    def balance(code: str, amount: str) -> str:
        sign = "DBIT" if amount.startswith("-") else "CRDT"
        return (
            f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
            f'<Amt Ccy="EUR">{amount.lstrip("-")}</Amt><CdtDbtInd>{sign}</CdtDbtInd>'
            "<Dt><Dt>2023-01-31</Dt></Dt></Bal>"
        )

    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>M1</MsgId><CreDtTm>2023-02-01T06:00:00</CreDtTm></GrpHdr>
<Stmt><Id>S1</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>EUR</Ccy></Acct>
{balance("OPBD", opening)}{balance("CLBD", closing)}{"".join(entries)}
</Stmt></BkToCstmrStmt></Document>""".encode()


def _entry(amount: str, indicator: str, details: str = "", extra: str = "") -> str:
    return (
        f'<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>{indicator}</CdtDbtInd>'
        f"<Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2023-01-15</Dt></BookgDt>{extra}"
        f"<NtryDtls>{details}</NtryDtls></Ntry>"
    )


def _detail(e2e: str, amount: str, name: str) -> str:
    return (
        f"<TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs>"
        f'<Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
        f"<RltdPties><Dbtr><Pty><Nm>{name}</Nm></Pty></Dbtr></RltdPties>"
        f"<RmtInf><Ustrd>Invoice {e2e}</Ustrd></RmtInf></TxDtls>"
    )


def test_camt053_that_balances() -> None:
    # 100.00 opening + 50.00 received - 30.00 paid = 120.00 closing
    (statement,) = parse_camt053(_camt053(_entry("50.00", "CRDT"), _entry("30.00", "DBIT")))
    assert [line.amount for line in statement.lines] == [Decimal("50.00"), Decimal("-30.00")]
    assert validate_statement(statement) == []


def test_camt053_that_does_not_balance() -> None:
    data = _camt053(_entry("50.00", "CRDT"), _entry("30.00", "DBIT"), closing="125.00")
    with pytest.raises(StatementError) as raised:
        parse_camt053(data)
    assert raised.value.code == "unbalanced_statement"
    assert "difference 5.00" in raised.value.message
    statements, errors = read_camt053(data)  # errors as values: the statement is still there
    assert [e.code for e in errors] == ["unbalanced_statement"]
    assert statements[0].closing_balance == Decimal("125.00")


def test_camt053_negative_balances_use_the_indicator() -> None:
    # -10.00 overdrawn, 4.00 received: -6.00
    (statement,) = parse_camt053(
        _camt053(_entry("4.00", "CRDT"), opening="-10.00", closing="-6.00")
    )
    assert (statement.opening_balance, statement.closing_balance) == (
        Decimal("-10.00"),
        Decimal("-6.00"),
    )


def test_camt053_batch_entry_splits_into_its_transactions() -> None:
    batch = _detail("E2E-1", "20.00", "Alice") + _detail("E2E-2", "30.00", "Bob")
    entry = _entry("50.00", "CRDT", batch, extra="<AcctSvcrRef>BATCH-9</AcctSvcrRef>")
    lines = parse_camt053(_camt053(entry, closing="150.00"))[0].lines
    assert [(x.bank_reference, x.amount, x.end_to_end_id, x.counterparty_name) for x in lines] == [
        ("BATCH-9/1", Decimal("20.00"), "E2E-1", "Alice"),
        ("BATCH-9/2", Decimal("30.00"), "E2E-2", "Bob"),
    ]


def test_camt053_batch_whose_details_do_not_add_up_stays_one_line() -> None:
    batch = _detail("E2E-1", "20.00", "Alice") + _detail("E2E-2", "25.00", "Bob")
    (line,) = parse_camt053(_camt053(_entry("50.00", "CRDT", batch), closing="150.00"))[0].lines
    assert line.amount == Decimal("50.00")
    assert line.end_to_end_id is None


def test_camt053_pending_entries_are_not_lines() -> None:
    pending = _entry("50.00", "CRDT").replace("<Cd>BOOK</Cd>", "<Cd>PDNG</Cd>")
    (statement,) = parse_camt053(_camt053(pending, closing="100.00"))
    assert statement.lines == ()


def test_camt053_truncated_file() -> None:
    data = (CAMT / "camt053.v2.multi.statement.xml").read_bytes()
    with pytest.raises(StatementError) as raised:
        parse_statement(data[: len(data) // 2])
    assert raised.value.code == "malformed_xml"
    assert "truncated" in raised.value.message


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('<Amt Ccy="EUR">12,50</Amt>', "bad_amount"),
        ('<Amt Ccy="EUR">-12.50</Amt>', "bad_amount"),
        ("<Amt>12.50</Amt>", "missing_field"),
    ],
)
def test_camt053_bad_entry_amount(text: str, code: str) -> None:
    data = _camt053(_entry("50.00", "CRDT")).replace(b'<Amt Ccy="EUR">50.00</Amt>', text.encode())
    with pytest.raises(StatementError) as raised:
        read_camt053(data)
    assert raised.value.code == code


def test_camt053_bad_booking_date() -> None:
    data = _camt053(_entry("20.00", "CRDT")).replace(b"2023-01-15", b"2023-02-30")
    with pytest.raises(StatementError) as raised:
        parse_camt053(data)
    assert raised.value.code == "bad_date"


def test_camt053_other_versions_are_refused_by_name() -> None:
    data = _camt053().replace(b"camt.053.001.08", b"camt.053.001.13")
    with pytest.raises(StatementError) as raised:
        parse_statement(data)
    assert raised.value.code == "unsupported_format"
    assert "version 13" in raised.value.message


def test_xml_with_entity_declarations_is_refused() -> None:
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE Document [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>&b;
</BkToCstmrStmt></Document>"""
    with pytest.raises(StatementError) as raised:
        parse_statement(bomb)
    assert raised.value.code == "unsafe_xml"


# --- CSV ------------------------------------------------------------------------------

BANK_CSV = """Export of account DE89 3704 0044 0532 0130 00
Buchungstag;Valuta;Soll;Haben;Empfänger;Verwendungszweck;Referenz
15.01.2023;16.01.2023;;1.250,00;Acme GmbH;Invoice 2023-001;REF-1
16.01.2023;16.01.2023;49,90;;Hosting AG;Server January;
16.01.2023;16.01.2023;49,90;;Hosting AG;Server January;
""".encode()

BANK_MAPPING = CsvMapping(
    date_column="Buchungstag",
    date_format="%d.%m.%Y",
    value_date_column="Valuta",
    debit_column="Soll",
    credit_column="Haben",
    decimal_separator=",",
    thousands_separator=".",
    reference_column="Referenz",
    description_column="Verwendungszweck",
    counterparty_column="Empfänger",
    fixed_currency="EUR",
    delimiter=";",
    skip_rows=1,
    account_number="DE89370400440532013000",
)


def test_csv_with_debit_and_credit_columns() -> None:
    (statement,) = parse_statement(BANK_CSV, csv_mapping=BANK_MAPPING)
    assert statement.format == "csv"
    assert [line.amount for line in statement.lines] == [
        Decimal("1250.00"),
        Decimal("-49.90"),
        Decimal("-49.90"),
    ]
    first, second, third = statement.lines
    assert first.bank_reference == "REF-1"
    assert (first.booking_date, first.value_date) == (date(2023, 1, 15), date(2023, 1, 16))
    assert first.counterparty_name == "Acme GmbH"
    assert second.bank_reference.startswith("sha256:")
    assert second.bank_reference != third.bank_reference  # two equal payments stay two


def test_csv_missing_column() -> None:
    mapping = CsvMapping(date_column="Date", amount_column="Amount", fixed_currency="EUR")
    with pytest.raises(StatementError) as raised:
        parse_csv(b"Date,Betrag\n2023-01-15,10.00\n", mapping)
    assert raised.value.code == "missing_column"
    assert "'Amount'" in raised.value.message and "'Betrag'" in raised.value.message


def test_csv_signed_amount_and_currency_column() -> None:
    mapping = CsvMapping(date_column="Date", amount_column="Amount", currency_column="Currency")
    data = b"Date,Amount,Currency\n2023-01-15,10.00,EUR\n2023-01-16,-2.5,usd\n"
    statements = parse_csv(data, mapping)
    assert [(s.currency, [x.amount for x in s.lines]) for s in statements] == [
        ("EUR", [Decimal("10.00")]),
        ("USD", [Decimal("-2.5")]),
    ]


@pytest.mark.parametrize(
    ("row", "code"),
    [
        (b"2023-13-01,10.00", "bad_date"),
        (b"2023-01-15,1e3", "bad_amount"),
        (b"2023-01-15,", "bad_amount"),
    ],
)
def test_csv_bad_cells(row: bytes, code: str) -> None:
    mapping = CsvMapping(date_column="Date", amount_column="Amount", fixed_currency="EUR")
    with pytest.raises(StatementError) as raised:
        parse_csv(b"Date,Amount\n" + row + b"\n", mapping)
    assert raised.value.code == code
    assert "row 2" in raised.value.message


def test_csv_mapping_must_be_consistent() -> None:
    with pytest.raises(StatementError) as raised:
        CsvMapping(date_column="Date", fixed_currency="EUR")
    assert raised.value.code == "bad_mapping"


def test_csv_needs_a_mapping() -> None:
    with pytest.raises(StatementError) as raised:
        parse_statement(b"Date,Amount\n2023-01-15,10.00\n")
    assert raised.value.code == "unknown_format"


# --- detection and money types -------------------------------------------------------


def test_detect_format_by_content() -> None:
    assert detect_format((CAMT / "camt053.v4.xml").read_bytes()) == "camt.053"
    assert detect_format((OFX / "suncorp.ofx").read_bytes()) == "ofx"
    assert detect_format((OFX / "fail_nice_empty_balance.ofx").read_bytes()) == "ofx"
    assert detect_format(BANK_CSV) == "csv"


@pytest.mark.parametrize(("data", "name"), [(b"%PDF-1.7\n", None), (b"<OFX></OFX>", "qif")])
def test_unknown_format(data: bytes, name: str | None) -> None:
    with pytest.raises(StatementError) as raised:
        parse_statement(data, format=name)
    assert raised.value.code == "unknown_format"


def test_named_format_overrides_detection() -> None:
    with pytest.raises(StatementError) as raised:
        parse_statement((OFX / "suncorp.ofx").read_bytes(), format="camt.053")
    # suncorp.ofx is well-formed XML, so the camt parser reads it and names the root.
    assert raised.value.code == "unsupported_format"
    assert "<OFX>" in raised.value.message


def _all_parsed_statements() -> list[Statement]:
    statements = [
        s for name in CAMT053_PROBLEMS for s in read_camt053((CAMT / name).read_bytes())[0]
    ]
    statements += [
        s
        for name, code in OFX_OUTCOME.items()
        if code is None
        for s in read_ofx((OFX / name).read_bytes())[0]
    ]
    return statements + parse_csv(BANK_CSV, BANK_MAPPING)


def test_every_amount_is_a_decimal() -> None:
    statements = _all_parsed_statements()
    money = [s.opening_balance for s in statements] + [s.closing_balance for s in statements]
    money += [line.amount for s in statements for line in s.lines]
    assert money
    assert all(isinstance(value, Decimal) for value in money if value is not None)


def test_a_float_amount_is_refused() -> None:
    with pytest.raises(TypeError):
        StatementLine("R", date(2023, 1, 1), None, 1.5, "EUR")  # type: ignore[arg-type]


def test_records_are_immutable() -> None:
    statement = parse_ofx((OFX / "checking.ofx").read_bytes())[0]
    with pytest.raises(AttributeError):
        statement.currency = "EUR"  # type: ignore[misc]
    assert {f.name for f in fields(StatementLine)} >= {"bank_reference", "amount", "currency"}


def test_csv_in_another_encoding_says_which_to_set() -> None:
    with pytest.raises(StatementError) as raised:
        parse_csv(BANK_CSV.decode().encode("utf-16"), BANK_MAPPING)
    assert raised.value.code == "malformed_csv"
    assert "encoding" in raised.value.message


def test_camt053_without_namespace_is_read_by_its_message_element() -> None:
    data = _camt053(_entry("20.00", "CRDT")).replace(
        b' xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"', b""
    )
    assert detect_format(data) == "camt.053"
    (statement,) = parse_statement(data)
    assert statement.account_iban == "DE89370400440532013000"


# --- issue 7: items 1, 8, 9, 10, 14, 15, 16, 17 ---------------------------------------


def _swiss_batch() -> bytes:
    """A 3,483.00 CHF grouped credit: two details both carrying the entry's reference."""

    def detail(amount: str, name: str) -> str:
        return (
            f"<TxDtls><Refs><AcctSvcrRef>ZV-2023-0115-77</AcctSvcrRef></Refs>"
            f'<Amt Ccy="CHF">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
            f"<RltdPties><Dbtr><Nm>{name}</Nm></Dbtr></RltdPties></TxDtls>"
        )

    entry = _entry(
        "3483.00",
        "CRDT",
        detail("2187.00", "Muster AG") + detail("1296.00", "Beispiel GmbH"),
        extra="<AcctSvcrRef>ZV-2023-0115-77</AcctSvcrRef>",
    )
    data = _camt053(entry, opening="1000.00", closing="4483.00")
    return data.replace(b'Ccy="EUR"', b'Ccy="CHF"').replace(b"<Ccy>EUR</Ccy>", b"<Ccy>CHF</Ccy>")


def test_camt053_batch_parts_sharing_the_entry_reference_stay_two_lines() -> None:
    (statement,) = parse_camt053(_swiss_batch())
    assert [(x.bank_reference, x.amount, x.counterparty_name) for x in statement.lines] == [
        ("ZV-2023-0115-77/1", Decimal("2187.00"), "Muster AG"),
        ("ZV-2023-0115-77/2", Decimal("1296.00"), "Beispiel GmbH"),
    ]


def test_two_entries_with_one_reference_keep_both_lines() -> None:
    ref = "<AcctSvcrRef>SAME</AcctSvcrRef>"
    data = _camt053(_entry("10.00", "CRDT", extra=ref), _entry("10.00", "CRDT", extra=ref))
    (statement,) = parse_camt053(data)
    assert [x.bank_reference for x in statement.lines] == ["SAME", "SAME#2"]
    twin = "<STMTTRN><TRNTYPE>CREDIT<DTPOSTED>20230115<TRNAMT>5.00<FITID>F1</STMTTRN>"
    ofx = _ofx("20230115", extra=twin).replace(b"<BALAMT>100.00", b"<BALAMT>105.00")
    assert [x.bank_reference for x in parse_ofx(ofx)[0].lines] == ["F1", "F1#2"]


def _hostile(body: str) -> bytes:
    return ("OFXHEADER:100\nDATA:OFXSGML\n\n" + body).encode()


class _CountingText(str):
    """A body that counts the characters each forward search passes over."""

    scanned = 0

    def find(self, sub: str, start: Any = None, end: Any = None) -> int:
        found = super().find(sub, start, end)
        _CountingText.scanned += (found if found >= 0 else len(self)) - (start or 0)
        return found


def test_ofx_tokenizing_reads_each_character_a_bounded_number_of_times() -> None:
    from adapters.bank_statements._sgml import _tokens

    unit = "<![CDATA[x]]><!-- c --><MEMO>a &amp; b<NAME><X>y</X>"
    body = _CountingText(unit * 5_000)
    _CountingText.scanned = 0
    tokens = sum(1 for _ in _tokens(body))
    assert tokens == 7 * 5_000  # the comment yields nothing
    # Linear: no search ever starts over; a quadratic reader passes 5,000 times more.
    assert _CountingText.scanned <= 2 * len(body)


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ("<OFX>" + "<![CDATA[" * 60_000, "truncated_file", "CDATA"),
        ("<OFX>" + "<!--" * 60_000, "truncated_file", "<!--"),
        ("<OFX>" + "<STMTTRN><TRNAMT>1<FITID>x" * 20_000, "too_deeply_nested", "64 levels"),
        ("<A>" * 2_000 + "</A>" * 2_000, "too_deeply_nested", "64 levels"),
    ],
)
def test_hostile_ofx_is_refused_with_a_clear_code(body: str, code: str, words: str) -> None:
    # Each was quadratic (or a RecursionError) before: at this size, minutes of CPU.
    with pytest.raises(StatementError) as raised:
        parse_statement(_hostile(body))
    assert raised.value.code == code
    assert words in raised.value.message


def test_a_large_ofx_still_parses_every_line() -> None:
    trn = "<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20230115<TRNAMT>-1.00<FITID>F{n}</STMTTRN>\n"
    extra = "".join(trn.format(n=n) for n in range(20_000))
    data = _ofx("20230115", extra=extra).replace(b"<BALAMT>100.00", b"<BALAMT>-19900.00")
    (statement,) = parse_ofx(data)
    assert len(statement.lines) == 20_001
    assert statement.opening_balance == Decimal("0.00")


def test_a_reference_repeated_on_every_line_stays_one_line_each() -> None:
    # 20,000 lines with one FITID: quadratic suffixing would take minutes here.
    trn = "<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20230115<TRNAMT>-1.00<FITID>F1</STMTTRN>\n"
    data = _ofx("20230115", extra=trn * 19_999).replace(b"<BALAMT>100.00", b"<BALAMT>80.01")
    (statement,) = parse_ofx(data)
    references = [line.bank_reference for line in statement.lines]
    assert references[:3] == ["F1", "F1#2", "F1#3"]
    assert references[-1] == "F1#20000"
    assert len(set(references)) == 20_000


def test_ofx_nul_in_a_field_is_refused_naming_the_field() -> None:
    data = _ofx("20230115").replace(b"<NAME>Acme", b"<NAME>Ac\x00me")
    with pytest.raises(StatementError) as raised:
        parse_statement(data)
    assert raised.value.code == "nul_byte"
    assert "counterparty_name" in raised.value.message


def test_ofx_utf8_declared_as_cp1252_is_read_as_utf8() -> None:
    data = _ofx("20230115").replace(b"<NAME>Acme", "<NAME>850€ — café".encode())
    assert b"CHARSET" not in data
    data = data.replace(b"VERSION:102", b"VERSION:102\nENCODING:USASCII\nCHARSET:1252")
    (statement,) = parse_ofx(data)
    assert statement.lines[0].counterparty_name == "850€ — café"
    # Real cp1252 still reads as cp1252.
    latin = _ofx("20230115").replace(b"<NAME>Acme", "<NAME>café".encode("cp1252"))
    assert parse_ofx(latin)[0].lines[0].counterparty_name == "café"


def test_ofx_opening_balance_is_closing_minus_lines() -> None:
    # closing 100.00 after one credit of 100.00: the balance before was 0.00
    (statement,) = parse_ofx(_ofx("20230115"))
    assert (statement.opening_balance, statement.closing_balance) == (
        Decimal("0.00"),
        Decimal("100.00"),
    )
    (empty,) = parse_ofx((OFX / "ofx-v102-empty-tags.ofx").read_bytes())
    assert empty.opening_balance is None  # no closing balance, nothing to derive from


def test_camt053_booking_date_falls_back_to_value_date_then_statement_date() -> None:
    valued = _entry("50.00", "CRDT").replace(
        "<BookgDt><Dt>2023-01-15</Dt></BookgDt>", "<ValDt><Dt>2023-01-14</Dt></ValDt>"
    )
    bare = _entry("30.00", "DBIT").replace("<BookgDt><Dt>2023-01-15</Dt></BookgDt>", "")
    data = _camt053(valued, bare)
    (statement,) = parse_camt053(data)  # the closing balance's day
    assert [(x.booking_date, x.value_date) for x in statement.lines] == [
        (date(2023, 1, 14), date(2023, 1, 14)),
        (date(2023, 1, 31), None),
    ]
    # Without balances (a camt.053 may carry none), the day the statement was made.
    created = b"<Stmt><Id>S1</Id><CreDtTm>2023-02-01T06:00:00</CreDtTm>"
    unbalanced = re.sub(rb"<Bal>.*?</Bal>", b"", data.replace(b"<Stmt><Id>S1</Id>", created))
    assert parse_camt053(unbalanced)[0].lines[1].booking_date == date(2023, 2, 1)


def test_camt053_utc_booking_time_is_a_day_in_the_accounts_time_zone() -> None:
    from zoneinfo import ZoneInfo

    entry = _entry("50.00", "CRDT").replace(
        "<BookgDt><Dt>2023-01-15</Dt></BookgDt>",
        "<BookgDt><DtTm>2023-01-15T23:30:00Z</DtTm></BookgDt>",
    )
    data = _camt053(entry, closing="150.00")
    assert parse_camt053(data)[0].lines[0].booking_date == date(2023, 1, 15)  # UTC
    zurich = parse_statement(data, time_zone=ZoneInfo("Europe/Zurich"))[0]
    assert zurich.lines[0].booking_date == date(2023, 1, 16)
    # Without an offset the time is the bank's own: no conversion.
    local = data.replace(b"23:30:00Z", b"23:30:00")
    assert parse_statement(local, time_zone=ZoneInfo("Asia/Tokyo"))[0].lines[0].booking_date == (
        date(2023, 1, 15)
    )


def test_camt053_balance_without_indicator_is_a_credit() -> None:
    data = _camt053(_entry("20.00", "CRDT")).replace(b"<CdtDbtInd>CRDT</CdtDbtInd><Dt>", b"<Dt>")
    assert b"CdtDbtInd>CRDT</CdtDbtInd><Dt>" not in data
    (statement,) = parse_camt053(data)
    assert (statement.opening_balance, statement.closing_balance) == (
        Decimal("100.00"),
        Decimal("120.00"),
    )
    debit = _camt053(_entry("20.00", "CRDT"), opening="-20.00", closing="0.00")
    debit = debit.replace(b"<CdtDbtInd>CRDT</CdtDbtInd><Dt>", b"<Dt>")
    assert parse_camt053(debit)[0].opening_balance == Decimal("-20.00")


def test_camt053_statement_without_entries_is_accepted_when_its_balances_agree() -> None:
    (statement,) = parse_camt053(_camt053(opening="100.00", closing="100.00"))
    assert statement.lines == ()
    with pytest.raises(StatementError) as raised:
        parse_camt053(_camt053(opening="100.00", closing="120.00"))
    assert raised.value.code == "unbalanced_statement"


_BALANCE_CSV = b"""Date;Amount;Mark;Balance;Ref
2023-01-15;100,00;C;1100,00;R1
2023-01-16;30,00;D;1070,00;R2
2023-01-17;0,50;D;1069,50;R3
"""
_BALANCE_MAPPING = CsvMapping(
    date_column="Date",
    amount_column="Amount",
    indicator_column="Mark",
    balance_column="Balance",
    reference_column="Ref",
    decimal_separator=",",
    fixed_currency="EUR",
    delimiter=";",
)


def test_csv_indicator_and_balance_columns() -> None:
    (statement,) = parse_csv(_BALANCE_CSV, _BALANCE_MAPPING)
    assert [(x.bank_reference, x.amount) for x in statement.lines] == [
        ("R1", Decimal("100.00")),
        ("R2", Decimal("-30.00")),
        ("R3", Decimal("-0.50")),
    ]
    assert (statement.opening_balance, statement.closing_balance) == (
        Decimal("1000.00"),
        Decimal("1069.50"),
    )
    # Newest first, as many banks export: the same statement, oldest first.
    header, *rows = _BALANCE_CSV.strip().split(b"\n")
    newest_first = b"\n".join([header, *rows[::-1]]) + b"\n"
    assert parse_csv(newest_first, _BALANCE_MAPPING) == [statement]


def test_csv_balance_column_that_does_not_chain_is_refused() -> None:
    broken = _BALANCE_CSV.replace(b"1069,50", b"1068,50")
    with pytest.raises(StatementError) as raised:
        parse_csv(broken, _BALANCE_MAPPING)
    assert raised.value.code == "unbalanced_statement"
    unknown = _BALANCE_CSV.replace(b";D;1070", b";X;1070")
    with pytest.raises(StatementError) as raised:
        parse_csv(unknown, _BALANCE_MAPPING)
    assert raised.value.code == "bad_amount" and "'X'" in raised.value.message


def test_csv_debit_and_credit_columns_with_zero_in_the_unused_one() -> None:
    data = b"Date,Debit,Credit\n2023-01-15,0.00,12.00\n2023-01-16,5.00,0.00\n"
    mapping = CsvMapping(
        date_column="Date", debit_column="Debit", credit_column="Credit", fixed_currency="EUR"
    )
    (statement,) = parse_csv(data, mapping)
    assert [x.amount for x in statement.lines] == [Decimal("12.00"), Decimal("-5.00")]


def test_csv_card_export_with_purchases_positive() -> None:
    data = b"Date,Amount,Balance\n2023-01-15,40.00,40.00\n2023-01-16,-40.00,0.00\n"
    mapping = CsvMapping(
        date_column="Date",
        amount_column="Amount",
        balance_column="Balance",
        fixed_currency="USD",
        invert_sign=True,
    )
    (statement,) = parse_csv(data, mapping)
    # A purchase raises what is owed: money out, negative; the payment brings it back.
    assert [x.amount for x in statement.lines] == [Decimal("-40.00"), Decimal("40.00")]
    assert (statement.opening_balance, statement.closing_balance) == (Decimal(0), Decimal(0))


MT940 = FIXTURES / "mt940"
# None: every statement parses cleanly; otherwise the code, on purpose.
MT940_OUTCOME: dict[str, str | None] = {
    # ASN writes a 22-character :61: customer reference (SWIFT allows 16).
    "wolph-mt940__ASNB_mt940.txt": "malformed_mt940",
    # The second statement is a snippet: its lines do not reach its closing balance.
    "wolph-mt940__betterplace_sepa_snippet.sta": "unbalanced_statement",
    "wolph-mt940__cmxl_mt940.sta": None,
    # Test data edited by hand: 3,236.28 - 321.44 is not the closing 876.84.
    "wolph-mt940__jejik_abnamro.sta": "unbalanced_statement",
}


def test_every_mt940_fixture_has_an_expectation() -> None:
    found = {p.name for p in MT940.iterdir() if not p.name.startswith(("LICENSE", "README"))}
    assert found == set(MT940_OUTCOME)


@pytest.mark.parametrize("name", sorted(MT940_OUTCOME))
def test_mt940_fixture(name: str) -> None:
    data = (MT940 / name).read_bytes()
    assert detect_format(data) == "mt940"
    code = MT940_OUTCOME[name]
    if code is None:
        assert parse_statement(data) == parse_statement(data, format="mt940")
        return
    with pytest.raises(StatementError) as raised:
        parse_statement(data)
    assert raised.value.code == code


def test_mt940_values() -> None:
    dem, eur, pln = parse_statement((MT940 / "wolph-mt940__cmxl_mt940.sta").read_bytes())
    assert [
        (s.account, s.currency, s.opening_balance, s.closing_balance) for s in (dem, eur, pln)
    ] == [
        ("45050050/76198810", "DEM", Decimal("84349.74"), Decimal("84437.04")),
        ("10020030/1234567", "EUR", Decimal("2187.95"), Decimal("4387.95")),
        ("BPHKPLPK/320000546101", "PLN", Decimal("40000.00"), Decimal("50040.00")),
    ]
    assert [(x.bank_reference, x.booking_date, x.amount) for x in pln.lines] == [
        ("8327000090031789", date(2003, 10, 20), Decimal("20000.00")),
        ("8327000090031790", date(2003, 10, 20), Decimal("-10000.00")),
        ("8327000090031791", date(2003, 10, 20), Decimal("40.00")),
    ]
