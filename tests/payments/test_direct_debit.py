"""Direct-debit collection runs on PostgreSQL, worked examples with exact entries:
three EUR invoices (100.00, 50.00, 200.00) collected by SEPA post Clearing:SEPA
| AR per invoice and write a pain.008 (FRST, then RCUR); the 200.00 one comes
back AM04 — AR 200.00 | Clearing 200.00, the invoice open again, the mandate
still active, a 5.00 return fee invoiced; the bank's 150.00 credit naming the
run settles clearing to 0 through auto-match. ACH writes a NACHA file achkit
accepts, and R01 / R02 returns keep or close the account."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import achkit  # type: ignore[import-untyped]
import psycopg
import pytest

from adapters.collections.runs import NothingToCollect, create_collection_run
from adapters.collections.sepa import validate_pain008
from adapters.runtime import Runtime
from adapters.services import verify_everything
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client
from tests.integration.test_exports_beancount import export_text, load
from tests.integration.test_reconciliation_matching import camt053
from tests.payments.helpers import (
    account_balance,
    create_customer,
    create_invoice,
    entries_of_kind,
)

SEPA = "Assets:Clearing:SEPA"
ACH = "Assets:Clearing:ACH"
AR = "Assets:Receivable:Trade"
BANK = "Assets:Bank:Operating"
CREDITOR = {
    "name": "Active Billing GmbH",
    "iban": "DE89370400440532013000",
    "bic": "COBADEFFXXX",
    "creditor_id": "DE98ZZZ09999999999",
}
ORIGINATOR = {
    "odfi_routing": "021000021",
    "odfi_name": "Chase",
    "company_name": "Active Billing",
    "company_id": "1234567890",
}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def _settings(client: Any, key: str, **settings: Any) -> None:
    changed = client.patch("/v1/book/settings", json=settings, headers=auth(key))
    assert changed.status_code == 200, changed.text


def _mandate(client: Any, key: str, customer: str, mandate: str) -> dict[str, Any]:
    body = {
        "type": "sepa_debit",
        "iban": "DE02120300000000202051",
        "bic": "BYLADEM1001",
        "mandate_id": mandate,
        "mandate_date": "2026-01-15",
        "default": True,
    }
    made = client.post(f"/v1/customers/{customer}/payment-methods", json=body, headers=auth(key))
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


def _bank_account(client: Any, key: str, customer: str, routing: str, holder: str) -> None:
    body = {
        "type": "us_bank_account",
        "routing_number": routing,
        "account_number": "000123456789",
        "account_type": "checking",
        "account_holder_type": holder,
        "default": True,
    }
    made = client.post(f"/v1/customers/{customer}/payment-methods", json=body, headers=auth(key))
    assert made.status_code == 201, made.text


def _methods(client: Any, key: str, customer: str) -> list[dict[str, Any]]:
    got = client.get(f"/v1/customers/{customer}/payment-methods", headers=auth(key))
    assert got.status_code == 200, got.text
    data: list[dict[str, Any]] = got.json()["data"]
    return data


def _invoice(client: Any, key: str, ref: str) -> dict[str, Any]:
    got = client.get(f"/v1/invoices/{ref}", headers=auth(key))
    assert got.status_code == 200, got.text
    result: dict[str, Any] = got.json()
    return result


def _run(client: Any, key: str, scheme: str, as_of: str = "2026-12-31", **headers: str) -> Any:
    return client.post(
        "/v1/collection-runs",
        json={"scheme": scheme, "as_of": as_of},
        headers={**auth(key), **headers},
    )


def _returns(client: Any, key: str, data: bytes, name: str = "returns") -> Any:
    return client.post("/v1/collection-returns", files={"file": (name, data)}, headers=auth(key))


def camt054(e2e: str, amount: str, code: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.02"><BkToCstmrDbtCdtNtfctn>
<GrpHdr><MsgId>N1</MsgId><CreDtTm>2026-03-05T06:00:00</CreDtTm></GrpHdr>
<Ntfctn><Id>N1</Id><CreDtTm>2026-03-05T06:00:00</CreDtTm>
<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>
<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>DBIT</CdtDbtInd><RvslInd>true</RvslInd>
<Sts>BOOK</Sts><BookgDt><Dt>2026-03-05</Dt></BookgDt><BkTxCd/>
<NtryDtls><TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs>
<Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>DBIT</CdtDbtInd>
<RtrInf><Rsn><Cd>{code}</Cd></Rsn></RtrInf></TxDtls></NtryDtls></Ntry>
</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>""".encode()


def pain002(e2e: str, code: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"><CstmrPmtStsRpt>
<GrpHdr><MsgId>S1</MsgId><CreDtTm>2026-03-03T06:00:00</CreDtTm></GrpHdr>
<OrgnlGrpInfAndSts><OrgnlMsgId>X</OrgnlMsgId><OrgnlMsgNmId>pain.008.001.02</OrgnlMsgNmId>
</OrgnlGrpInfAndSts><OrgnlPmtInfAndSts><OrgnlPmtInfId>P1</OrgnlPmtInfId>
<TxInfAndSts><OrgnlEndToEndId>{e2e}</OrgnlEndToEndId><TxSts>RJCT</TxSts>
<StsRsnInf><Rsn><Cd>{code}</Cd></Rsn></StsRsnInf></TxInfAndSts>
</OrgnlPmtInfAndSts></CstmrPmtStsRpt></Document>""".encode()


def camt053_eur(amount: str, day: str, reference: str, credit: bool = True) -> bytes:
    sign = "CRDT" if credit else "DBIT"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>M1</MsgId><CreDtTm>2026-03-06T06:00:00</CreDtTm></GrpHdr>
<Stmt><Id>2026-03</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>EUR</Ccy></Acct>
<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">0.00</Amt>
<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-03-01</Dt></Dt></Bal>
<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{amount}</Amt>
<CdtDbtInd>{sign}</CdtDbtInd><Dt><Dt>2026-03-06</Dt></Dt></Bal>
<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>{sign}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt><AcctSvcrRef>B-{day}</AcctSvcrRef>
<NtryDtls><TxDtls><RmtInf><Ustrd>SEPA collection {reference}</Ustrd></RmtInf></TxDtls>
</NtryDtls></Ntry></Stmt></BkToCstmrStmt></Document>""".encode()


@pytest.fixture
def sepa_book(runtime: Runtime, client: Any) -> BookFixture:
    book = make_book(runtime, "EUR", date(2026, 3, 2))  # a Monday
    _settings(client, book.admin_key, sepa_creditor=CREDITOR, direct_debit_return_fee="5.00")
    return book


def _sepa_customers(client: Any, key: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Anna (100.00 and 50.00, mandate M-ANNA) and Bernd (200.00, mandate M-BERND)."""
    anna = create_customer(client, key, currency="EUR", tax_rate="0", name="Anna Schmidt")
    bernd = create_customer(client, key, currency="EUR", tax_rate="0", name="Bernd Weber")
    _mandate(client, key, anna["id"], "M-ANNA")
    _mandate(client, key, bernd["id"], "M-BERND")
    invoices = [
        create_invoice(client, key, anna["id"], "100.00"),
        create_invoice(client, key, anna["id"], "50.00"),
        create_invoice(client, key, bernd["id"], "200.00"),
    ]
    return invoices, [anna["id"], bernd["id"]]


def test_sepa_run_of_three_invoices_one_returned_am04_then_settled(
    client: Any, runtime: Runtime, sepa_book: BookFixture
) -> None:
    key = sepa_book.admin_key
    invoices, (anna, bernd) = _sepa_customers(client, key)
    made = _run(client, key, "sepa", **{"Idempotency-Key": "run-1"})
    assert made.status_code == 201, made.text
    run = made.json()
    assert (run["scheme"], run["file_format"], run["status"], run["total"]) == (
        "sepa",
        "pain.008.001.02",
        "submitted",
        "350.00",
    )
    assert (run["created_on"], run["collection_date"]) == ("2026-03-02", "2026-12-31")
    by_invoice = {t["invoice"]: t for t in run["transactions"]}
    assert [by_invoice[i["id"]]["amount"] for i in invoices] == ["100.00", "50.00", "200.00"]
    assert {t["sequence"] for t in run["transactions"]} == {"FRST"}
    # The same key answers the same run; nothing is collected twice.
    assert _run(client, key, "sepa", **{"Idempotency-Key": "run-1"}).json() == run
    assert_problem(_run(client, key, "sepa"), 422, "nothing_to_collect")

    with runtime.connection() as conn:
        assert sorted(entries_of_kind(conn, sepa_book.id, "payment")) == sorted(
            [[(SEPA, x), (AR, f"-{x}")] for x in ("100.00", "50.00", "200.00")]
        )
        assert account_balance(conn, sepa_book.id, SEPA) == "350.00"
    assert [_invoice(client, key, i["id"])["status"] for i in invoices] == ["paid"] * 3
    assert _methods(client, key, anna)[0]["details"]["sequence"] == "RCUR"
    for kind in ("payment.succeeded", "invoice.paid"):
        events = client.get("/v1/events", params={"type": kind}, headers=auth(key)).json()
        assert len(events["data"]) == 3, kind
    payment = client.get(
        f"/v1/payments/{by_invoice[invoices[2]['id']]['payment']}", headers=auth(key)
    ).json()
    assert (payment["method"], payment["amount"], payment["reference"]) == (
        "sepa_debit",
        "200.00",
        by_invoice[invoices[2]["id"]]["reference"],
    )
    assert [a["invoice"] for a in payment["allocations"]] == [invoices[2]["id"]]

    file = client.get(f"/v1/collection-runs/{run['id']}/file", headers=auth(key))
    assert file.status_code == 200
    assert file.headers["content-type"].startswith("application/xml")
    validate_pain008(file.content, "pain.008.001.02")
    text = file.text
    assert text.count("<DrctDbtTxInf>") == 3 and "<CtrlSum>350.00</CtrlSum>" in text
    assert f"<MsgId>{run['message_id']}</MsgId>" in text and "<MndtId>M-BERND</MndtId>" in text
    again = client.get(f"/v1/collection-runs/{run['id']}/file", headers=auth(key))
    assert again.content == file.content

    # Bernd's 200.00 comes back: insufficient funds.
    returned = by_invoice[invoices[2]["id"]]
    imported = _returns(client, key, camt054(returned["reference"], "200.00", "AM04"))
    assert imported.status_code == 201, imported.text
    [item] = imported.json()["returns"]
    assert (item["code"], item["mandate_status"], item["duplicate"]) == ("AM04", "active", False)
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sepa_book.id, "collection_return") == [
            [(SEPA, "-200.00"), (AR, "200.00")]
        ]
        assert account_balance(conn, sepa_book.id, SEPA) == "150.00"
    reopened = _invoice(client, key, invoices[2]["id"])
    assert (reopened["status"], reopened["amount_paid"], reopened["amount_due"]) == (
        "open",
        "0.00",
        "200.00",
    )
    assert _methods(client, key, bernd)[0]["details"]["mandate_status"] == "active"
    failed = client.get("/v1/events", params={"type": "payment.failed"}, headers=auth(key))
    [event] = failed.json()["data"]
    assert (event["data"]["object"]["status"], event["data"]["object"]["amount"]) == (
        "failed",
        "200.00",
    )
    fee = _invoice(client, key, item["fee_invoice"])
    assert (fee["status"], fee["total"], fee["customer"]) == ("open", "5.00", bernd)
    # The same file again changes nothing.
    with runtime.connection() as conn:
        before = len(entries_of_kind(conn, sepa_book.id, "collection_return"))
    replay = _returns(client, key, camt054(returned["reference"], "200.00", "AM04"))
    assert replay.status_code == 200 and replay.json()["duplicates"] == 1
    with runtime.connection() as conn:
        assert len(entries_of_kind(conn, sepa_book.id, "collection_return")) == before

    # The bank credits the run net of the return: 150.00 naming the message id.
    statement = client.post(
        "/v1/bank-statements",
        files={"file": ("mar.xml", camt053_eur("150.00", "2026-03-04", run["message_id"]))},
        data={"account": BANK},
        headers=auth(key),
    )
    assert statement.status_code == 201, statement.text
    matched = client.post(
        "/v1/reconciliation/auto-match", json={"account": BANK}, headers=auth(key)
    )
    assert matched.status_code == 200, matched.text
    assert matched.json()["matched_lines"] == 1
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sepa_book.id, "collection_settlement") == [
            [(BANK, "150.00"), (SEPA, "-150.00")]
        ]
        assert account_balance(conn, sepa_book.id, SEPA) == "0.00"
    settled = client.get(f"/v1/collection-runs/{run['id']}", headers=auth(key)).json()
    assert settled["status"] == "settled"
    assert settled["totals"] == {"pending": "0.00", "settled": "150.00", "returned": "200.00"}

    # The next run retries the reopened invoice (RCUR now) and collects the fee.
    retry = _run(client, key, "sepa")
    assert retry.status_code == 201, retry.text
    assert sorted((t["amount"], t["sequence"]) for t in retry.json()["transactions"]) == [
        ("200.00", "RCUR"),
        ("5.00", "RCUR"),
    ]
    with runtime.connection() as conn:
        assert verify_everything(conn, sepa_book.id) == []
    text = export_text(runtime, sepa_book.id)
    load(text)  # beancount's loader: zero errors
    assert "Assets:Clearing:SEPA" in text and "Direct debit returned (AM04)" in text


@pytest.mark.parametrize(("code", "state"), [("MD06", "revoked"), ("AC04", "inactive")])
def test_a_return_that_ends_the_mandate_keeps_its_invoice_out_of_the_next_run(
    client: Any, runtime: Runtime, sepa_book: BookFixture, code: str, state: str
) -> None:
    key = sepa_book.admin_key
    _settings(client, key, direct_debit_return_fee=None)
    invoices, (_, bernd) = _sepa_customers(client, key)
    run = _run(client, key, "sepa").json()
    bernds = next(t for t in run["transactions"] if t["invoice"] == invoices[2]["id"])
    done = _returns(client, key, pain002(bernds["reference"], code))
    assert done.status_code == 201, done.text
    assert done.json()["returns"][0]["fee_invoice"] is None
    assert _methods(client, key, bernd)[0]["details"]["mandate_status"] == state
    nothing = assert_problem(_run(client, key, "sepa"), 422, "nothing_to_collect")
    assert [s["invoice"] for s in nothing["skipped"]] == [invoices[2]["id"]]
    with runtime.connection() as conn:
        assert verify_everything(conn, sepa_book.id) == []


def test_a_first_debit_rejected_before_settlement_is_first_again(
    client: Any, sepa_book: BookFixture
) -> None:
    key = sepa_book.admin_key
    invoices, (_, bernd) = _sepa_customers(client, key)
    run = _run(client, key, "sepa").json()
    bernds = next(t for t in run["transactions"] if t["invoice"] == invoices[2]["id"])
    assert _returns(client, key, pain002(bernds["reference"], "AM04")).status_code == 201
    assert _methods(client, key, bernd)[0]["details"]["sequence"] == "FRST"


def test_a_returns_file_naming_an_unknown_transaction_writes_nothing(
    client: Any, runtime: Runtime, sepa_book: BookFixture
) -> None:
    key = sepa_book.admin_key
    invoices, _ = _sepa_customers(client, key)
    run = _run(client, key, "sepa").json()
    known = run["transactions"][0]["reference"]
    with runtime.connection() as conn:
        before = (
            account_balance(conn, sepa_book.id, SEPA),
            len(entries_of_kind(conn, sepa_book.id, "collection_return")),
        )
    both = pain002(known, "AM04").replace(
        b"</OrgnlPmtInfAndSts>",
        b"<TxInfAndSts><OrgnlEndToEndId>DDNOSUCHTRANSACTION</OrgnlEndToEndId><TxSts>RJCT"
        b"</TxSts><StsRsnInf><Rsn><Cd>AC04</Cd></Rsn></StsRsnInf></TxInfAndSts>"
        b"</OrgnlPmtInfAndSts>",
    )
    body = assert_problem(_returns(client, key, both), 422, "unknown_reference")
    assert "DDNOSUCHTRANSACTION" in body["detail"] and known not in body["detail"]
    wrong_amount = camt054(known, "1.00", "AM04")
    assert_problem(_returns(client, key, wrong_amount), 422)
    for junk in (b"", b"not a file", b"<Document><Other/></Document>", b"<unclosed"):
        assert _returns(client, key, junk).status_code in (400, 422)
    assert_problem(client.post("/v1/collection-returns", files={}, headers=auth(key)), 400)
    with runtime.connection() as conn:
        after = (
            account_balance(conn, sepa_book.id, SEPA),
            len(entries_of_kind(conn, sepa_book.id, "collection_return")),
        )
    assert after == before
    assert all(_invoice(client, key, i["id"])["status"] == "paid" for i in invoices)


def test_bad_run_requests(client: Any, runtime: Runtime) -> None:
    book = make_book(runtime, "EUR", date(2026, 3, 2))
    key = book.admin_key
    assert_problem(_run(client, key, "bacs"), 422)
    assert_problem(_run(client, key, "sepa", as_of="9999-12-31"), 422)
    bad_date = client.post(
        "/v1/collection-runs", json={"scheme": "sepa", "as_of": "soon"}, headers=auth(key)
    )
    assert_problem(bad_date, 400)
    assert_problem(_run(client, key, "sepa"), 422, "invalid_collection_file")  # no creditor
    assert_problem(_run(client, key, "ach"), 422, "invalid_collection_file")  # no originator
    missing = client.get(
        "/v1/collection-runs/00000000-0000-0000-0000-000000000000", headers=auth(key)
    )
    assert_problem(missing, 404)


def test_two_concurrent_runs_collect_each_invoice_once(
    client: Any, runtime: Runtime, sepa_book: BookFixture
) -> None:
    invoices, _ = _sepa_customers(client, sepa_book.admin_key)
    results: list[object] = []
    start = threading.Barrier(2)

    def one() -> None:
        start.wait()
        try:
            with unit_of_work(runtime.connection) as uow:
                run = create_collection_run(
                    uow.conn, sepa_book.id, "sepa", date(2026, 12, 31), date(2026, 3, 2)
                )
                uow.commit()
            results.append(run["transaction_count"])
        except NothingToCollect as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=str) == [3, "nothing_to_collect"]
    with runtime.connection() as conn:
        rows = conn.execute(
            "select invoice_id, count(*) from collection_transactions where book_id = %s"
            " group by 1",
            (sepa_book.id,),
        ).fetchall()
        assert sorted(str(r[0]) for r in rows) == sorted(i["id"] for i in invoices)
        assert {r[1] for r in rows} == {1}
        assert account_balance(conn, sepa_book.id, SEPA) == "350.00"


def test_the_database_refuses_a_second_unsettled_collection_of_an_invoice(
    client: Any, runtime: Runtime, sepa_book: BookFixture
) -> None:
    _sepa_customers(client, sepa_book.admin_key)
    run = _run(client, sepa_book.admin_key, "sepa").json()
    with runtime.connection() as conn, pytest.raises(psycopg.errors.UniqueViolation) as caught:
        conn.execute(
            "insert into collection_transactions (book_id, id, run_id, invoice_id, customer_id,"
            " payment_method_id, payment_id, amount, currency, reference)"
            " select book_id, gen_random_uuid(), run_id, invoice_id, customer_id,"
            " payment_method_id, payment_id, amount, currency, reference || 'X'"
            " from collection_transactions where book_id = %s and run_id = %s limit 1",
            (sepa_book.id, run["id"]),
        )
    assert caught.value.diag.constraint_name == "uq_collection_transactions_unsettled"


# --- ACH -------------------------------------------------------------------------------


@pytest.fixture
def ach_book(runtime: Runtime, client: Any) -> BookFixture:
    book = make_book(runtime, "USD", date(2026, 3, 2))
    _settings(client, book.admin_key, ach_originator=ORIGINATOR)
    return book


def _nacha_return(file_text: str, trace: str, code: str) -> bytes:
    lines = file_text.splitlines()
    entry = next(x for x in lines if x.startswith("6") and x.endswith(trace))
    batch = next(x for x in lines if x.startswith("5"))
    addenda = "799" + code + trace + " " * 6 + "02100002" + "RETURNED".ljust(44) + "021000020000001"
    assert len(addenda) == 94
    body = [lines[0], batch, entry[:78] + "1" + entry[79:], addenda, "8" + "0" * 93, "9" + "0" * 93]
    return ("\n".join(body) + "\n").encode()


def test_ach_file_is_accepted_by_achkit_and_r01_r02_returns(
    client: Any, runtime: Runtime, ach_book: BookFixture
) -> None:
    key = ach_book.admin_key
    person = create_customer(client, key, tax_rate="0", name="Pat Doe")
    company = create_customer(client, key, tax_rate="0", name="Initech LLC")
    _bank_account(client, key, person["id"], "011000015", "individual")
    _bank_account(client, key, company["id"], "122105278", "company")
    p_invoice = create_invoice(client, key, person["id"], "100.00")
    c_invoice = create_invoice(client, key, company["id"], "250.00")
    made = _run(client, key, "ach")
    assert made.status_code == 201, made.text
    run = made.json()
    assert (run["file_format"], run["total"], run["currency"]) == ("nacha", "350.00", "USD")
    sec = {t["invoice"]: t["sec_code"] for t in run["transactions"]}
    assert sec == {p_invoice["id"]: "PPD", c_invoice["id"]: "CCD"}
    text = client.get(f"/v1/collection-runs/{run['id']}/file", headers=auth(key)).text
    assert achkit.validate(text) == {"ok": True, "errors": []}
    parsed = achkit.parse(text)
    assert [b["sec"] for b in parsed["batches"]] == ["PPD", "CCD"]
    assert sum(e["amount_cents"] for b in parsed["batches"] for e in b["entries"]) == 35000
    control = next(x for x in text.splitlines() if x.startswith("9") and not x.startswith("99"))
    assert control[21:31] == str(1100001 + 12210527).rjust(10, "0")  # entry hash
    assert control[31:43] == "000000035000"  # total debits
    with runtime.connection() as conn:
        assert sorted(entries_of_kind(conn, ach_book.id, "payment")) == sorted(
            [[(ACH, x), (AR, f"-{x}")] for x in ("100.00", "250.00")]
        )

    traces = {t["invoice"]: t["reference"] for t in run["transactions"]}
    r01 = _returns(client, key, _nacha_return(text, traces[p_invoice["id"]], "R01"))
    assert r01.status_code == 201, r01.text
    assert r01.json()["returns"][0]["mandate_status"] == "active"
    r02 = _returns(client, key, _nacha_return(text, traces[c_invoice["id"]], "R02"))
    assert r02.status_code == 201, r02.text
    assert r02.json()["returns"][0]["mandate_status"] == "inactive"
    with runtime.connection() as conn:
        assert sorted(entries_of_kind(conn, ach_book.id, "collection_return")) == sorted(
            [[(ACH, f"-{x}"), (AR, x)] for x in ("100.00", "250.00")]
        )
        assert account_balance(conn, ach_book.id, ACH) == "0.00"
    assert _invoice(client, key, p_invoice["id"])["amount_due"] == "100.00"
    assert _invoice(client, key, c_invoice["id"])["amount_due"] == "250.00"
    # R01 is retried by the next run; the closed account (R02) is not.
    retry = _run(client, key, "ach").json()
    assert [(t["invoice"], t["amount"]) for t in retry["transactions"]] == [
        (p_invoice["id"], "100.00")
    ]
    assert [s["invoice"] for s in retry["skipped"]] == [c_invoice["id"]]
    assert retry["transactions"][0]["reference"] not in traces.values()
    # A malformed NACHA returns file is a 4xx and writes nothing.
    broken = _nacha_return(text, traces[p_invoice["id"]], "R01").replace(b"799R01", b"799X01")
    assert_problem(_returns(client, key, broken), 422, "invalid_collection_file")
    assert_problem(_returns(client, key, b"1" + b"0" * 50), 422)
    with runtime.connection() as conn:
        assert verify_everything(conn, ach_book.id) == []
        assert Decimal(account_balance(conn, ach_book.id, ACH)) == Decimal("100.00")


@pytest.mark.parametrize(
    ("code", "state"), [("R03", "inactive"), ("R10", "revoked"), ("R29", "revoked")]
)
def test_an_ach_return_sets_the_mandate_and_the_rest_settles_from_the_bank_line(
    client: Any, runtime: Runtime, ach_book: BookFixture, code: str, state: str
) -> None:
    """R03 (no account) leaves the bank account inactive; R10 and R29 (not authorized)
    revoke it. The bank then credits what the run still has unsettled, naming the
    file's message id: auto-match settles ACH clearing to the bank."""
    key = ach_book.admin_key
    returned = create_customer(client, key, tax_rate="0", name="Pat Doe")
    paying = create_customer(client, key, tax_rate="0", name="Initech LLC")
    _bank_account(client, key, returned["id"], "011000015", "individual")
    _bank_account(client, key, paying["id"], "122105278", "company")
    r_invoice = create_invoice(client, key, returned["id"], "100.00")
    create_invoice(client, key, paying["id"], "250.00")
    run = _run(client, key, "ach").json()
    text = client.get(f"/v1/collection-runs/{run['id']}/file", headers=auth(key)).text
    trace = next(t["reference"] for t in run["transactions"] if t["invoice"] == r_invoice["id"])
    answered = _returns(client, key, _nacha_return(text, trace, code))
    assert answered.status_code == 201, answered.text
    assert answered.json()["returns"][0]["mandate_status"] == state
    assert _invoice(client, key, r_invoice["id"])["amount_due"] == "100.00"
    statement = client.post(
        "/v1/bank-statements",
        files={"file": ("mar.xml", camt053([("250.00", "2026-03-04", "ACH-1", None, None,
                                               run["message_id"])]))},
        data={"account": BANK},
        headers=auth(key),
    )  # fmt: skip
    assert statement.status_code == 201, statement.text
    matched = client.post(
        "/v1/reconciliation/auto-match", json={"account": BANK}, headers=auth(key)
    )
    assert matched.status_code == 200, matched.text
    assert matched.json()["matched_lines"] == 1
    with runtime.connection() as conn:
        assert sorted(entries_of_kind(conn, ach_book.id, "collection_return")) == [
            [(ACH, "-100.00"), (AR, "100.00")]
        ]
        assert account_balance(conn, ach_book.id, ACH) == "0.00"
        assert account_balance(conn, ach_book.id, BANK) == "250.00"
        assert verify_everything(conn, ach_book.id) == []
    retry = _run(client, key, "ach")  # the returned account is no longer debited
    if retry.status_code == 201:
        assert retry.json()["transactions"] == []
    else:
        assert_problem(retry, 422, "nothing_to_collect")


def test_pain008_v08_and_a_bank_line_settling_one_transaction(
    client: Any, runtime: Runtime, sepa_book: BookFixture
) -> None:
    key = sepa_book.admin_key
    _settings(client, key, sepa_creditor={"pain008_version": "pain.008.001.08"})
    invoices, _ = _sepa_customers(client, key)
    run = _run(client, key, "sepa").json()
    assert run["file_format"] == "pain.008.001.08"
    listed = client.get("/v1/collection-runs", headers=auth(key)).json()["data"]
    assert [(r["id"], r["total"], r["returned"]) for r in listed] == [(run["id"], "350.00", "0.00")]
    file = client.get(f"/v1/collection-runs/{run['id']}/file", headers=auth(key)).content
    validate_pain008(file, "pain.008.001.08")
    one = next(t for t in run["transactions"] if t["invoice"] == invoices[1]["id"])
    statement = client.post(
        "/v1/bank-statements",
        files={"file": ("mar.xml", camt053_eur("50.00", "2026-03-04", one["reference"]))},
        data={"account": BANK},
        headers=auth(key),
    )
    assert statement.status_code == 201, statement.text
    matched = client.post(
        "/v1/reconciliation/auto-match", json={"account": BANK}, headers=auth(key)
    )
    assert matched.json()["matched_lines"] == 1
    with runtime.connection() as conn:
        assert account_balance(conn, sepa_book.id, SEPA) == "300.00"
        assert account_balance(conn, sepa_book.id, BANK) == "50.00"
    got = client.get(f"/v1/collection-runs/{run['id']}", headers=auth(key)).json()
    assert (got["status"], got["totals"]["settled"], got["totals"]["pending"]) == (
        "submitted",
        "50.00",
        "300.00",
    )


def test_a_whole_message_rejected_by_pain002_reverses_every_debit(
    client: Any, runtime: Runtime, sepa_book: BookFixture
) -> None:
    key = sepa_book.admin_key
    _settings(client, key, direct_debit_return_fee=None)
    invoices, _ = _sepa_customers(client, key)
    run = _run(client, key, "sepa").json()
    rejected = f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"><CstmrPmtStsRpt>
<GrpHdr><MsgId>S2</MsgId><CreDtTm>2026-03-03T06:00:00</CreDtTm></GrpHdr>
<OrgnlGrpInfAndSts><OrgnlMsgId>{run["message_id"]}</OrgnlMsgId>
<OrgnlMsgNmId>pain.008.001.02</OrgnlMsgNmId><GrpSts>RJCT</GrpSts>
<StsRsnInf><Rsn><Cd>FF01</Cd></Rsn></StsRsnInf></OrgnlGrpInfAndSts>
</CstmrPmtStsRpt></Document>""".encode()
    unknown = rejected.replace(run["message_id"].encode(), b"CRNOSUCHMESSAGE")
    assert "CRNOSUCHMESSAGE" in assert_problem(_returns(client, key, unknown), 422)["detail"]
    done = _returns(client, key, rejected)
    assert done.status_code == 201, done.text
    assert [r["code"] for r in done.json()["returns"]] == ["FF01"] * 3
    with runtime.connection() as conn:
        assert account_balance(conn, sepa_book.id, SEPA) == "0.00"
        assert verify_everything(conn, sepa_book.id) == []
    assert [_invoice(client, key, i["id"])["status"] for i in invoices] == ["open"] * 3
    assert _returns(client, key, rejected).json()["duplicates"] == 3


def test_a_sepa_run_in_a_usd_book_posts_the_realized_difference(
    client: Any, runtime: Runtime
) -> None:
    """EUR 1,000.00 invoiced at 1.10 and collected at 1.08: Realized 20.00 USD."""
    book = make_book(runtime, "USD", date(2026, 3, 2))
    key = book.admin_key
    _settings(client, key, sepa_creditor=CREDITOR)
    rates = [
        {"date": "2026-03-01", "base": "EUR", "quote": "USD", "rate": "1.10"},
        {"date": "2026-03-09", "base": "EUR", "quote": "USD", "rate": "1.08"},
    ]
    assert client.post("/v1/fx-rates", json=rates, headers=auth(key)).status_code == 201
    customer = create_customer(client, key, currency="EUR", tax_rate="0")
    _mandate(client, key, customer["id"], "M-FX")
    invoice = create_invoice(client, key, customer["id"], "1000.00")
    moved = client.post("/v1/clock", json={"now": "2026-03-10"}, headers=auth(key))
    assert moved.status_code == 200, moved.text
    run = _run(client, key, "sepa")
    assert run.status_code == 201, run.text
    with runtime.connection() as conn:
        assert entries_of_kind(conn, book.id, "fx_realized") == [
            [("Assets:Receivable:FX-Translation", "-20.00"), ("Income:FX:Realized", "20.00")]
        ]
        assert verify_everything(conn, book.id) == []
    assert _invoice(client, key, invoice["id"])["status"] == "paid"


def test_a_return_after_settlement_is_cleared_by_the_banks_debit_line(
    client: Any, runtime: Runtime, sepa_book: BookFixture
) -> None:
    key = sepa_book.admin_key
    _settings(client, key, direct_debit_return_fee=None)
    invoices, _ = _sepa_customers(client, key)
    run = _run(client, key, "sepa").json()

    def statement(data: bytes) -> dict[str, Any]:
        made = client.post(
            "/v1/bank-statements",
            files={"file": ("s.xml", data)},
            data={"account": BANK},
            headers=auth(key),
        )
        assert made.status_code == 201, made.text
        got = client.get(f"/v1/bank-statements/{made.json()['id']}", headers=auth(key))
        result: dict[str, Any] = got.json()
        return result

    statement(camt053_eur("350.00", "2026-03-04", run["message_id"]))
    assert (
        client.post(
            "/v1/reconciliation/auto-match", json={"account": BANK}, headers=auth(key)
        ).json()["matched_lines"]
        == 1
    )
    bernds = next(t for t in run["transactions"] if t["invoice"] == invoices[2]["id"])
    assert _returns(client, key, camt054(bernds["reference"], "200.00", "MS02")).status_code == 201
    with runtime.connection() as conn:
        assert account_balance(conn, sepa_book.id, SEPA) == "-200.00"
    # The bank debits the returned 200.00: its line's other side is the clearing account.
    debit = statement(camt053_eur("200.00", "2026-03-09", "RETURN", credit=False))
    [line] = debit["lines"]
    made = client.post(
        f"/v1/bank-statements/{debit['id']}/lines/{line['id']}/entry",
        json={"counter_account": SEPA},
        headers=auth(key),
    )
    assert made.status_code == 201, made.text
    with runtime.connection() as conn:
        assert account_balance(conn, sepa_book.id, SEPA) == "0.00"
        assert account_balance(conn, sepa_book.id, BANK) == "150.00"
        assert verify_everything(conn, sepa_book.id) == []
    got = client.get(f"/v1/collection-runs/{run['id']}", headers=auth(key)).json()
    assert (got["status"], got["totals"]["settled"], got["totals"]["returned"]) == (
        "settled",
        "150.00",
        "200.00",
    )


def test_a_gross_credit_after_an_early_return_then_the_banks_debit_settle_by_auto_match(
    client: Any, runtime: Runtime, sepa_book: BookFixture
) -> None:
    key = sepa_book.admin_key
    _settings(client, key, direct_debit_return_fee=None)
    invoices, _ = _sepa_customers(client, key)
    run = _run(client, key, "sepa").json()
    bernds = next(t for t in run["transactions"] if t["invoice"] == invoices[2]["id"])
    assert _returns(client, key, camt054(bernds["reference"], "200.00", "AM04")).status_code == 201

    def upload_and_match(data: bytes) -> int:
        made = client.post(
            "/v1/bank-statements",
            files={"file": ("s.xml", data)},
            data={"account": BANK},
            headers=auth(key),
        )
        assert made.status_code == 201, made.text
        matched = client.post(
            "/v1/reconciliation/auto-match", json={"account": BANK}, headers=auth(key)
        )
        assert matched.status_code == 200, matched.text
        count: int = matched.json()["matched_lines"]
        return count

    # The bank credits the whole 350.00, then debits the returned 200.00.
    assert upload_and_match(camt053_eur("350.00", "2026-03-04", run["message_id"])) == 1
    with runtime.connection() as conn:
        assert account_balance(conn, sepa_book.id, SEPA) == "-200.00"
    debit = camt053_eur("200.00", "2026-03-06", bernds["reference"], credit=False)
    assert upload_and_match(debit) == 1
    with runtime.connection() as conn:
        assert entries_of_kind(conn, sepa_book.id, "collection_return_debit") == [
            [(BANK, "-200.00"), (SEPA, "200.00")]
        ]
        assert account_balance(conn, sepa_book.id, SEPA) == "0.00"
        assert account_balance(conn, sepa_book.id, BANK) == "150.00"
        assert verify_everything(conn, sepa_book.id) == []
