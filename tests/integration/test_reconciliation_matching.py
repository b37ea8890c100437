"""Reconciliation through the API on a statement generated from the book's own entries.

The book posts payment-like entries (Assets:Bank:Operating against
Assets:Receivable:Trade) carrying references, invoice numbers and customers;
the statement holds a bank line for most of them plus noise (a bank fee,
interest, an unknown receipt, an amount off by a cent, an ambiguous pair, a
payment outside the date window).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from billing.postgres.posting import post_entries  # the book holds billing documents
from ledger.entries import Posting, build_entry
from ledger.money import Money
from ledger.postgres.posting import reverse_entry
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client

BANK = "Assets:Bank:Operating"
AR = "Assets:Receivable:Trade"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def _payment(
    day: str,
    amount: str,
    key: str,
    *,
    memo: str = "Payment received",
    customer: str | None = None,
    document: str | None = None,
    metadata: dict[str, Any] | None = None,
    counter: str = AR,
) -> Any:
    money = Money(Decimal(amount), "USD")
    return build_entry(
        date.fromisoformat(day),
        memo,
        [Posting(BANK, money, customer, document), Posting(counter, -money, customer, document)],
        metadata=metadata or {},
        idempotency_key=key,
    )


def _post_book(runtime: Runtime, book: BookFixture) -> dict[str, str]:
    """The book's entries; returns name → entry id."""
    entries = {
        "opening": _payment("2026-01-01", "1000.00", "opening", memo="Opening balance",
                            counter="Equity:Opening-Balances"),
        "p1": _payment("2026-01-05", "120.00", "pay-1", customer="cus_1",
                       document="payment:pay_001", metadata={"bank_reference": "BANKREF-001"}),
        "p2": _payment("2026-01-06", "250.00", "pay-2", customer="cus_2",
                       metadata={"end_to_end_id": "E2E-PAY-002"}),
        "split": _payment("2026-01-07", "400.00", "pay-split", customer="cus_3",
                          metadata={"bank_reference": "BATCH-77"}),
        "p3": _payment("2026-01-08", "99.50", "pay-3", customer="cus_acme",
                       document="invoice:INV-2026-000123"),
        "p4": _payment("2026-01-09", "75.25", "pay-4",
                       memo="Payment received for INV-2026-000124"),
        "p5": _payment("2026-01-10", "100.00", "pay-5",
                       metadata={"invoice_number": "INV-2026-000130"}),
        "p6": _payment("2026-01-10", "200.00", "pay-6",
                       metadata={"invoice_number": "INV-2026-000131"}),
        "p7": _payment("2026-01-12", "42.00", "pay-7", customer="cus_globex",
                       metadata={"customer_name": "Globex Corporation"}),
        "p8a": _payment("2026-01-15", "50.00", "pay-8a", memo="Payment from Initech"),
        "p8b": _payment("2026-01-16", "50.00", "pay-8b", memo="Payment from Initech"),
        "p9": _payment("2026-01-18", "19.99", "pay-9", memo="Payment from Umbrella"),
        "p10": _payment("2026-01-02", "60.00", "pay-10", memo="Payment from Hooli"),
        "p11": _payment("2026-01-30", "500.00", "pay-11", memo="Payment from Stark Industries"),
        "mistake": _payment("2026-01-11", "80.00", "pay-mistake", memo="Posted twice by mistake"),
    }  # fmt: skip
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book.id, list(entries.values()))
        ids = {name: str(p.id) for name, p in zip(entries, posted, strict=True)}
        ids["reversal"] = str(reverse_entry(uow.conn, book.id, ids["mistake"]).id)
        uow.commit()
    return ids


# (amount, booking date, bank reference, end-to-end id, counterparty, remittance)
STATEMENT_LINES: list[tuple[str, str, str, str | None, str | None, str | None]] = [
    ("120.00", "2026-01-06", "BANKREF-001", None, "Customer One", "pay_001"),
    ("250.00", "2026-01-07", "BR-0002", "E2E-PAY-002", "Customer Two", "Thanks"),
    ("150.00", "2026-01-08", "BR-0077-1", "BATCH-77", "Customer Three", "part 1"),
    ("250.00", "2026-01-08", "BR-0077-2", "BATCH-77", "Customer Three", "part 2"),
    ("99.50", "2026-01-09", "BR-0003", None, "ACME GmbH", "Payment INV-2026-000123 thank you"),
    ("75.25", "2026-01-10", "BR-0004", None, "Wayne", "INV2026000124"),
    ("300.00", "2026-01-11", "BR-0005", None, "Tyrell",
     "Invoices INV-2026-000130, INV-2026-000131"),
    ("42.00", "2026-01-14", "BR-0007", None, "GLOBEX CORP", "monthly"),
    ("50.00", "2026-01-16", "BR-0008", None, "Initech", "payment"),
    ("19.98", "2026-01-18", "BR-0009", None, "Umbrella", "payment"),
    ("60.00", "2026-01-20", "BR-0010", None, "Hooli", "payment"),
    ("-12.50", "2026-01-31", "BR-FEE", None, None, "Account maintenance fee"),
    ("33.00", "2026-01-25", "BR-UNKNOWN", None, "Unknown Payer", "gift"),
    ("1.23", "2026-01-31", "BR-INT", None, None, "Interest"),
]  # fmt: skip
# What auto-match must find: rule → the statement lines (by bank reference) it clears.
EXPECTED = {
    ("bank_reference", ("BANKREF-001",)),
    ("bank_reference", ("BR-0002",)),
    ("bank_reference", ("BR-0077-1", "BR-0077-2")),
    ("invoice_number", ("BR-0003",)),
    ("invoice_number", ("BR-0004",)),
    ("invoice_number", ("BR-0005",)),
    ("amount_date_counterparty", ("BR-0007",)),
    ("reversal_pair", ()),
}
UNMATCHED = {"BR-0008", "BR-0009", "BR-0010", "BR-FEE", "BR-UNKNOWN", "BR-INT"}


def camt053(lines: list[tuple[str, str, str, str | None, str | None, str | None]]) -> bytes:
    opening = Decimal("1000.00")
    closing = opening + sum((Decimal(x[0]) for x in lines), Decimal(0))

    def balance(code: str, amount: Decimal, day: str) -> str:
        sign = "DBIT" if amount < 0 else "CRDT"
        return (
            f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
            f'<Amt Ccy="USD">{abs(amount)}</Amt><CdtDbtInd>{sign}</CdtDbtInd>'
            f"<Dt><Dt>{day}</Dt></Dt></Bal>"
        )

    entries = []
    for amount, day, ref, e2e, name, info in lines:
        incoming = not amount.startswith("-")
        role = "Dbtr" if incoming else "Cdtr"
        party = f"<RltdPties><{role}><Nm>{name}</Nm></{role}></RltdPties>" if name else ""
        refs = f"<Refs><EndToEndId>{e2e}</EndToEndId></Refs>" if e2e else ""
        remittance = f"<RmtInf><Ustrd>{info}</Ustrd></RmtInf>" if info else ""
        entries.append(
            f'<Ntry><Amt Ccy="USD">{amount.lstrip("-")}</Amt>'
            f"<CdtDbtInd>{'CRDT' if incoming else 'DBIT'}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
            f"<BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt>"
            f"<AcctSvcrRef>{ref}</AcctSvcrRef>"
            f"<NtryDtls><TxDtls>{refs}{party}{remittance}</TxDtls></NtryDtls></Ntry>"
        )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>M1</MsgId><CreDtTm>2026-02-01T06:00:00</CreDtTm></GrpHdr>
<Stmt><Id>2026-01</Id><Acct><Id><IBAN>US00BANK0000000001</IBAN></Id><Ccy>USD</Ccy></Acct>
{balance("OPBD", opening, "2026-01-02")}{balance("CLBD", closing, "2026-01-31")}
{"".join(entries)}</Stmt></BkToCstmrStmt></Document>""".encode()


def _ledger_counts(conn: psycopg.Connection, book_id: uuid.UUID) -> tuple[int, int]:
    row = conn.execute(
        "select (select count(*) from journal_entries where book_id = %(b)s),"
        " (select count(*) from postings where book_id = %(b)s)",
        {"b": book_id},
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.fixture
def scenario(runtime: Runtime, client: Any) -> tuple[BookFixture, dict[str, str], dict[str, Any]]:
    book = make_book(runtime)
    ids = _post_book(runtime, book)
    uploaded = client.post(
        "/v1/bank-statements",
        files={"file": ("jan.xml", camt053(STATEMENT_LINES))},
        data={"account": BANK},
        headers=auth(book.admin_key),
    )
    assert uploaded.status_code == 201, uploaded.text
    return book, ids, uploaded.json()


def test_auto_match_finds_exactly_the_unambiguous_matches(
    client: Any,
    app_conn: psycopg.Connection,
    scenario: tuple[BookFixture, dict[str, str], dict[str, Any]],
) -> None:
    book, ids, statement = scenario
    refs = {x["id"]: x["bank_reference"] for x in statement["lines"]}
    ledger_before = _ledger_counts(app_conn, book.id)
    response = client.post(
        "/v1/reconciliation/auto-match",
        json={"statement": statement["id"]},
        headers=auth(book.admin_key),
    )
    assert response.status_code == 200, response.text
    result = response.json()
    found = {(m["rule"], tuple(sorted(refs[x] for x in m["lines"]))) for m in result["matches"]}
    assert found == EXPECTED
    postings = {
        m["rule"] + ":" + ",".join(sorted(refs[x] for x in m["lines"])): {
            p["entry_id"] for p in m["postings"]
        }
        for m in result["matches"]
    }
    assert postings["invoice_number:BR-0005"] == {ids["p5"], ids["p6"]}  # one line, two postings
    assert postings["bank_reference:BR-0077-1,BR-0077-2"] == {ids["split"]}  # two lines, one
    assert postings["amount_date_counterparty:BR-0007"] == {ids["p7"]}
    assert postings["reversal_pair:"] == {ids["mistake"], ids["reversal"]}
    assert result["lines_considered"] == len(STATEMENT_LINES)
    assert result["matched_lines"] == len(STATEMENT_LINES) - len(UNMATCHED)
    assert result["unmatched_lines"] == len(UNMATCHED)
    rate = Decimal(result["match_rate"])
    print(
        f"\nauto-match rate: {result['matched_lines']}/{result['lines_considered']} statement "
        f"lines = {rate:.2%} ({result['by_rule']})"
    )
    assert rate == Decimal("0.5714")
    # The ledger is untouched, and the statement shows what is matched.
    assert _ledger_counts(app_conn, book.id) == ledger_before
    lines = client.get(f"/v1/bank-statements/{statement['id']}", headers=auth(book.admin_key))
    left = {x["bank_reference"] for x in lines.json()["lines"] if x["status"] == "unmatched"}
    assert left == UNMATCHED
    # A second run finds nothing new.
    again = client.post(
        "/v1/reconciliation/auto-match", json={"account": BANK}, headers=auth(book.admin_key)
    )
    assert again.json()["matched"] == 0
    assert again.json()["unmatched_lines"] == len(UNMATCHED)


def test_manual_match_undo_entry_from_line_and_report(
    client: Any,
    app_conn: psycopg.Connection,
    scenario: tuple[BookFixture, dict[str, str], dict[str, Any]],
) -> None:
    book, ids, statement = scenario
    key = auth(book.admin_key)
    line = {x["bank_reference"]: x for x in statement["lines"]}
    client.post("/v1/reconciliation/auto-match", json={"account": BANK}, headers=key)
    ledger_before = _ledger_counts(app_conn, book.id)

    # Off by a cent: refused, nothing written.
    off = client.post(
        "/v1/reconciliation/matches",
        json={"lines": [line["BR-0009"]["id"]], "entries": [ids["p9"]]},
        headers=key,
    )
    body = assert_problem(off, 422, "match_amounts_differ")
    assert (body["lines_total"], body["postings_total"]) == ("19.98", "19.99")

    # The ambiguous Initech payment: the accountant picks the posting of the 16th.
    manual = client.post(
        "/v1/reconciliation/matches",
        json={"lines": [line["BR-0008"]["id"]],
              "postings": [{"entry_id": ids["p8b"], "line_no": 1}],
              "note": "Initech, second payment"},
        headers=key,
    )  # fmt: skip
    assert manual.status_code == 201, manual.text
    match = manual.json()
    assert (match["rule"], match["amount"], match["status"]) == ("manual", "50.00", "live")
    twice = client.post(
        "/v1/reconciliation/matches",
        json={"lines": [line["BR-0008"]["id"]],
              "postings": [{"entry_id": ids["p8a"], "line_no": 1}]},
        headers=key,
    )  # fmt: skip
    assert_problem(twice, 409, "already_matched")
    # A posting on another account cannot be matched to a bank line.
    other = client.post(
        "/v1/reconciliation/matches",
        json={"lines": [line["BR-0008"]["id"]],
              "postings": [{"entry_id": ids["p8a"], "line_no": 2}]},
        headers=key,
    )  # fmt: skip
    assert_problem(other, 422, "account_mismatch")

    # Undo, then match the other posting instead.
    undone = client.delete(f"/v1/reconciliation/matches/{match['id']}", headers=key)
    assert undone.status_code == 200, undone.text
    assert undone.json()["status"] == "undone"
    assert_problem(
        client.post(f"/v1/reconciliation/matches/{match['id']}/unmatch", headers=key),
        409,
        "already_undone",
    )
    rematch = client.post(
        "/v1/reconciliation/matches",
        json={"lines": [line["BR-0008"]["id"]], "entries": [ids["p8a"]]},
        headers=key,
    )
    assert rematch.status_code == 201, rematch.text
    assert _ledger_counts(app_conn, book.id) == ledger_before

    # The bank fee becomes an entry, matched to its line in the same transaction.
    fee = client.post(
        f"/v1/bank-statements/{statement['id']}/lines/{line['BR-FEE']['line_no']}/entry",
        json={"counter_account": "Expenses:Payment-Fees", "memo": "Bank fee January"},
        headers=key,
    )
    assert fee.status_code == 201, fee.text
    entry = client.get(f"/v1/journal-entries/{fee.json()['entry_id']}", headers=key).json()
    assert entry["effective_date"] == "2026-01-31"
    assert [(p["account"], p["amount"]) for p in entry["postings"]] == [
        (BANK, "-12.50"),
        ("Expenses:Payment-Fees", "12.50"),
    ]
    assert entry["metadata"]["bank_reference"] == "BR-FEE"
    assert fee.json()["match"]["rule"] == "created_entry"
    assert fee.json()["line"]["status"] == "matched"
    again = client.post(
        f"/v1/bank-statements/{statement['id']}/lines/{line['BR-FEE']['id']}/entry",
        json={"counter_account": "Expenses:Payment-Fees"},
        headers=key,
    )
    assert_problem(again, 409, "already_matched")
    # Interest: the caller names the income account.
    created = client.post("/v1/accounts", json={"name": "Income:Interest"}, headers=key)
    assert created.status_code == 201
    interest = client.post(
        f"/v1/bank-statements/{statement['id']}/lines/{line['BR-INT']['id']}/entry",
        json={"counter_account": "Income:Interest"},
        headers=key,
    )
    assert interest.status_code == 201, interest.text
    assert _ledger_counts(app_conn, book.id) == (ledger_before[0] + 2, ledger_before[1] + 4)

    # Report: Hooli (60.00, outside the window), Umbrella (19.98) and the unknown 33.00
    # are on the statement only; Hooli 60.00, Umbrella 19.99 and Stark 500.00 in the book only.
    report = client.get(
        "/v1/reports/reconciliation", params={"account": BANK, "as_of": "2026-01-31"},
        headers=key,
    ).json()  # fmt: skip
    closing = Decimal("1000.00") + sum((Decimal(x[0]) for x in STATEMENT_LINES), Decimal(0))
    assert report["statement_balance"] == str(closing)
    # book: opening + payments (incl. the mistake and its reversal) - fee + interest
    book_total = sum(
        (Decimal(x) for x in ("1000.00", "120.00", "250.00", "400.00", "99.50", "75.25",
                              "300.00", "42.00", "100.00", "19.99", "60.00", "500.00",
                              "-12.50", "1.23")),
        Decimal(0),
    )  # fmt: skip
    assert report["book_balance"] == str(book_total)
    assert sorted(x["amount"] for x in report["outstanding_lines"]["items"]) == [
        "19.98",
        "33.00",
        "60.00",
    ]
    # Initech paid once: the book's second 50.00 is still outstanding.
    assert sorted(x["amount"] for x in report["outstanding_postings"]["items"]) == [
        "19.99",
        "50.00",
        "500.00",
        "60.00",
    ]
    assert report["unexplained_difference"] == "0.00"
    assert report["reconciled"] is True
    # Before the month's end the Stark payment is not yet in the book either.
    early = client.get(
        "/v1/reports/reconciliation", params={"account": BANK, "as_of": "2026-01-20"},
        headers=key,
    ).json()  # fmt: skip
    assert "500.00" not in [x["amount"] for x in early["outstanding_postings"]["items"]]
    assert early["reconciled"] is True


def test_matches_are_checked_by_the_database(
    client: Any,
    app_conn: psycopg.Connection,
    scenario: tuple[BookFixture, dict[str, str], dict[str, Any]],
) -> None:
    book, ids, statement = scenario
    line = {x["bank_reference"]: x for x in statement["lines"]}
    account = app_conn.execute(
        "select id from accounts where book_id = %s and name = %s", (book.id, BANK)
    ).fetchone()
    assert account is not None
    match_id = uuid.uuid4()
    with pytest.raises(psycopg.errors.CheckViolation, match="must agree"):  # noqa: SIM117
        with app_conn.transaction():
            app_conn.execute(
                "insert into statement_matches (book_id, id, account_id, currency, rule, amount)"
                " values (%s, %s, %s, 'USD', 'manual', 19.98)",
                (book.id, match_id, account[0]),
            )
            app_conn.execute(
                "insert into statement_match_lines (book_id, match_id, line_id)"
                " values (%s, %s, %s)",
                (book.id, match_id, line["BR-0009"]["id"]),
            )
            app_conn.execute(
                "insert into statement_match_postings (book_id, match_id, entry_id, line_no)"
                " values (%s, %s, %s, 1)",
                (book.id, match_id, ids["p9"]),
            )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_conn.execute("delete from statement_match_lines where book_id = %s", (book.id,))
