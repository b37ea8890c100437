"""Salesforce round trips against a local stub answering the REST API's shapes.

Accounts become customers through the same upsert as `POST /v1/customers`;
a closed-won opportunity becomes a subscription; billing status goes back to
the Account through the outbox's CRM deliveries, written once per change.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from billing.postings import AR
from tests.billing.test_http_invoices import draft, finalize, line, trial_balance
from tests.conftest import BookFixture, make_book
from tests.integration.crm_helpers import (
    Clock,
    customer,
    deliveries,
    log_kinds,
    monthly_price,
    post,
    settings,
    worker,
)
from tests.integration.crm_stubs import SalesforceStub, salesforce_stub
from tests.integration.http_fixtures import assert_problem, open_client, sessions_in_transaction

ORG = "00D5e000000AbCdEAK"
TOKEN = "om-token-4f1c2a9e7b"
ACME, GLOBEX, INITECH = "001D000000IqhSLIAZ", "001D000000IqhSMIAZ", "001D000000IqhSNIAZ"
PRODUCT = "01tD0000000AbcdIAC"


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def book(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", date(2026, 1, 10))


@pytest.fixture
def sf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SalesforceStub]:
    with salesforce_stub(tmp_path) as stub:
        # requests trusts the stub's self-signed certificate, as it would a real CA's.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", stub.ca_file)
        stub.add_account(ACME, Name="Acme Corporation", BillingCity="Bern", BillingCountry="CH")
        stub.add_account(GLOBEX, Name="Globex", BillingCity="Springfield", BillingCountry="US")
        stub.add_account(INITECH, Name="Initech", BillingCity="Austin", BillingCountry="US")
        stub.contacts.append(
            {
                "Id": "003D000000QmFqAIAV",
                "AccountId": ACME,
                "Name": "Ada Billing",
                "Email": "billing@acme.example",
                "CreatedDate": "2025-06-01T08:00:00.000+0000",
            }
        )
        stub.opportunities += [
            {
                "Id": "006D000000BpRZcIAN",
                "AccountId": ACME,
                "CloseDate": "2026-01-08",
                "IsWon": True,
                "LastModifiedDate": stub.tick(),
                "lines": [{"Product2Id": PRODUCT, "Quantity": 2.0}],
            },
            {
                "Id": "006D000000BpRZdIAN",
                "AccountId": GLOBEX,
                "CloseDate": "2026-01-09",
                "IsWon": False,
                "LastModifiedDate": stub.tick(),
                "lines": [{"Product2Id": PRODUCT, "Quantity": 1.0}],
            },
        ]
        yield stub


def configure(client: Any, book: BookFixture, stub: SalesforceStub) -> None:
    settings(
        client,
        book,
        salesforce={
            "instance_url": stub.url,
            "access_token": stub.token,
            "allow_private_network": True,  # the stub listens on 127.0.0.1
            "organization_id": ORG,
            "outbound_token": TOKEN,
        },
        webhook_retry_seconds=[1, 2],
    )


def test_account_to_customer_to_paid_invoice_shows_balance_zero_and_mrr_on_the_account(
    client: Any,
    runtime: Runtime,
    book: BookFixture,
    sf: SalesforceStub,
    owner_conn: psycopg.Connection,
) -> None:
    configure(client, book, sf)
    # Billing knew Acme before the CRM sync, with a tax rate the CRM does not own.
    post(client, book, "/v1/customers",
         {"name": "Acme", "currency": "USD", "external_id": ACME, "tax_rate": "0.10"})  # fmt: skip
    price = monthly_price(client, book, "100.00")
    post(client, book, "/v1/crm/mappings",
         {"provider": "salesforce", "products": {PRODUCT: price}}, 200)  # fmt: skip

    summary = post(client, book, "/v1/crm/sync", {"provider": "salesforce"}, 200)
    assert {k: summary[k] for k in ("accounts", "created", "updated", "conflicts", "deals")} == {
        "accounts": 3, "created": 2, "updated": 1, "conflicts": 1, "deals": 1,
    }  # fmt: skip
    assert summary["subscriptions"] == 1 and summary["errors"] == []
    assert summary["cursor"] == "2026-01-05T09:04:00+00:00"  # the newest change read
    assert any("nextRecordsUrl" not in q for q in sf.queries) and len(sf.queries) >= 4

    acme = customer(client, book, ACME)
    assert acme["name"] == "Acme Corporation"  # identity: the CRM wins
    assert acme["tax_rate"] == "0.10"  # not sent by the sync: kept
    assert acme["email"] == "billing@acme.example"  # from the billing contact
    assert acme["address"] == {"city": "Bern", "country": "CH"}
    [conflict] = log_kinds(owner_conn, book.id, "conflict")
    assert (conflict["field"], conflict["resolution"]) == ("name", "crm_wins")
    assert (conflict["crm_value"], conflict["billing_value"]) == ("Acme Corporation", "Acme")

    w = worker(runtime, book)
    assert w.deliver_due() == 1  # subscription.created
    assert sf.patches[-1].id == ACME
    assert sf.patches[-1].body["ActiveBilling_MRR__c"] == "200.00"  # 2 x 100.00 a month
    assert sf.patches[-1].body["ActiveBilling_Next_Renewal_Date__c"] == "2026-01-08"

    invoice = finalize(
        client, book, draft(client, book, acme["id"], line("Setup", "1", "50"))["id"]
    )
    assert invoice["total"] == "55.00"
    w.deliver_due()
    assert sf.patches[-1].body["ActiveBilling_Balance_Due__c"] == "55.00"
    assert sf.patches[-1].body["ActiveBilling_Last_Invoice_Number__c"] == invoice["number"]
    assert sf.patches[-1].body["ActiveBilling_Last_Invoice_Date__c"] == "2026-01-10"
    writes = len(sf.patches)

    post(client, book, "/v1/payments",
         {"customer": acme["id"], "amount": "55.00", "currency": "USD",
          "method": "bank_transfer", "invoice": invoice["id"]})  # fmt: skip
    assert w.deliver_due() == 2  # payment.succeeded and invoice.paid
    assert len(sf.patches) == writes + 1  # the same status twice is written once
    assert deliveries(owner_conn, book.id)[-2:] == [("succeeded", 1), ("unchanged", 1)]
    assert sf.accounts[ACME]["ActiveBilling_Balance_Due__c"] == "0.00"
    assert sf.accounts[ACME]["ActiveBilling_MRR__c"] == "200.00"
    assert sf.accounts[ACME]["ActiveBilling_Overdue__c"] is False
    assert customer(client, book, ACME)["balance_due"] == "0.00"
    tb = trial_balance(client, book)
    assert tb.get((AR, "USD"), (Decimal(0), Decimal(0))) == (Decimal(0), Decimal(0))
    assert sum(d for d, _ in tb.values()) == sum(c for _, c in tb.values()) == Decimal("55.00")

    # A second sync of unchanged records changes nothing and makes no second subscription.
    again = post(client, book, "/v1/crm/sync", {"provider": "salesforce", "full": True}, 200)
    assert (again["unchanged"], again["subscriptions"], again["conflicts"]) == (3, 0, 0)


def test_a_failed_write_back_is_retried_on_the_books_schedule(
    client: Any,
    runtime: Runtime,
    book: BookFixture,
    sf: SalesforceStub,
    owner_conn: psycopg.Connection,
) -> None:
    configure(client, book, sf)
    post(client, book, "/v1/crm/sync", {"provider": "salesforce"}, 200)
    globex = customer(client, book, GLOBEX)
    sf.fail_patches = 2
    finalize(client, book, draft(client, book, globex["id"], line("Work", "1", "30"))["id"])
    clock = Clock()
    w = worker(runtime, book, clock)
    assert w.deliver_due() == 1
    assert deliveries(owner_conn, book.id) == [("pending", 1)]
    assert w.deliver_due() == 0  # not due before the first delay (1 s)
    clock.advance(1)
    assert w.deliver_due() == 1
    assert deliveries(owner_conn, book.id) == [("pending", 2)]
    clock.advance(2)
    assert w.deliver_due() == 1
    assert deliveries(owner_conn, book.id) == [("succeeded", 3)]
    assert len(sf.patches) == 3 and sf.accounts[GLOBEX]["ActiveBilling_Balance_Due__c"] == "30.00"
    errors = log_kinds(owner_conn, book.id, "error")
    assert [e["message"].split(":")[0] for e in errors] == ["attempt 1", "attempt 2"]


def _outbound_message(org: str, account: str, kind: str = "Account") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <ActionId>04k5e000000KyGXAA0</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/59.0/00D5e000000AbCd</EnterpriseUrl>
   <PartnerUrl>https://example.my.salesforce.com/services/Soap/u/59.0/00D5e000000AbCd</PartnerUrl>
   <Notification>
    <Id>04l5e00000AbCdEAAV</Id>
    <sObject xsi:type="sf:{kind}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>{account}</sf:Id>
     <sf:Name>Acme Holdings</sf:Name>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>""".encode()


def test_an_outbound_message_is_checked_by_token_and_org_then_upserts_the_account(
    client: Any, book: BookFixture, sf: SalesforceStub
) -> None:
    configure(client, book, sf)
    post(client, book, "/v1/crm/sync", {"provider": "salesforce"}, 200)
    sf.change_account(ACME, Name="Acme Holdings")
    url = f"/v1/webhooks/salesforce/{book.id}"
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    body = _outbound_message(ORG, ACME)

    tampered = client.post(url, params={"token": TOKEN + "x"}, content=body, headers=headers)
    assert_problem(tampered, 401, "invalid_signature")
    other_org = client.post(
        url, params={"token": TOKEN}, content=_outbound_message("00D000000000001AAA", ACME),
        headers=headers,
    )  # fmt: skip
    assert_problem(other_org, 401, "invalid_signature")
    assert customer(client, book, ACME)["name"] == "Acme Corporation"  # nothing changed

    ok = client.post(url, params={"token": TOKEN}, content=body, headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.headers["content-type"].startswith("text/xml")
    assert "<Ack>true</Ack>" in ok.text
    assert customer(client, book, ACME)["name"] == "Acme Holdings"  # read back from the CRM


def test_an_incremental_sync_reads_only_what_changed_since_the_saved_cursor(
    client: Any, book: BookFixture, sf: SalesforceStub
) -> None:
    configure(client, book, sf)
    first = post(client, book, "/v1/crm/sync", {"provider": "salesforce"}, 200)
    sf.change_account(INITECH, BillingCity="Dallas")
    second = post(client, book, "/v1/crm/sync", {"provider": "salesforce"}, 200)
    assert second["since"] == first["cursor"]
    assert (second["accounts"], second["updated"]) == (1, 1)
    assert customer(client, book, INITECH)["address"]["city"] == "Dallas"
    [accounts] = [q for q in sf.queries[-3:] if "FROM Account" in q]
    assert "WHERE LastModifiedDate > 2026-01-05T09:04:00Z" in accounts


def test_an_unreachable_instance_is_a_clear_502_and_a_private_one_needs_allowing(
    client: Any, book: BookFixture
) -> None:
    settings(client, book, salesforce={"instance_url": "https://10.20.30.40", "access_token": "t"})
    refused = client.post("/v1/crm/sync", json={"provider": "salesforce"},
                          headers={"Authorization": f"Bearer {book.admin_key}"})  # fmt: skip
    body = assert_problem(refused, 422, "crm_address_refused")
    assert "salesforce.allow_private_network" in body["detail"]
    settings(client, book, salesforce={"instance_url": "https://127.0.0.1:9",
                                       "allow_private_network": True})  # fmt: skip
    down = client.post("/v1/crm/sync", json={"provider": "salesforce"},
                       headers={"Authorization": f"Bearer {book.admin_key}"})  # fmt: skip
    body = assert_problem(down, 502, "crm_unavailable")
    assert "cannot reach Salesforce at https://127.0.0.1:9" in body["detail"]


def test_an_opportunity_won_later_arrives_by_outbound_message_as_a_subscription(
    client: Any, book: BookFixture, sf: SalesforceStub
) -> None:
    configure(client, book, sf)
    price = monthly_price(client, book, "100.00")
    post(client, book, "/v1/crm/mappings",
         {"provider": "salesforce", "products": {PRODUCT: price}}, 200)  # fmt: skip
    post(client, book, "/v1/crm/sync", {"provider": "salesforce"}, 200)
    lost = sf.opportunities[1]
    lost.update(IsWon=True, LastModifiedDate=sf.tick())
    ok = client.post(
        f"/v1/webhooks/salesforce/{book.id}",
        params={"token": TOKEN},
        content=_outbound_message(ORG, lost["Id"], "Opportunity"),
        headers={"Content-Type": "text/xml"},
    )
    assert ok.status_code == 200, ok.text
    headers = {"Authorization": f"Bearer {book.admin_key}"}
    subs = client.get("/v1/subscriptions", params={"customer": GLOBEX}, headers=headers).json()
    subs = subs["data"]
    assert [(s["start_date"], s["metadata"]["crm_deal"]) for s in subs] == [
        ("2026-01-09", lost["Id"])
    ]


def test_an_invoice_falling_overdue_reaches_the_account_on_the_books_next_day(
    client: Any,
    runtime: Runtime,
    book: BookFixture,
    sf: SalesforceStub,
    owner_conn: psycopg.Connection,
) -> None:
    configure(client, book, sf)
    post(client, book, "/v1/crm/sync", {"provider": "salesforce"}, 200)
    globex = customer(client, book, GLOBEX)
    invoice = finalize(
        client, book, draft(client, book, globex["id"], line("Work", "1", "30"))["id"]
    )
    assert invoice["due_date"] == "2026-02-09"  # net 30
    w = worker(runtime, book)
    assert w.deliver_due() == 1
    assert sf.accounts[GLOBEX]["ActiveBilling_Overdue__c"] is False
    assert w.deliver_due() == 0  # the same day: nothing to refresh

    post(client, book, "/v1/clock", {"now": "2026-02-10"}, 200)  # no event: only the date moved
    assert w.deliver_due() == 1  # the daily refresh
    assert sf.accounts[GLOBEX]["ActiveBilling_Overdue__c"] is True
    assert sf.accounts[GLOBEX]["ActiveBilling_Balance_Due__c"] == "30.00"
    assert w.deliver_due() == 0
    post(client, book, "/v1/clock", {"now": "2026-02-11"}, 200)
    writes = len(sf.patches)
    assert w.deliver_due() == 1  # refreshed, found unchanged, not written
    assert len(sf.patches) == writes
    assert deliveries(owner_conn, book.id)[-1] == ("unchanged", 1)


def test_a_hanging_crm_holds_no_lock_and_a_dead_workers_lease_lapses(
    client: Any,
    runtime: Runtime,
    book: BookFixture,
    sf: SalesforceStub,
    owner_conn: psycopg.Connection,
    database_url: str,
) -> None:
    """A write-back is leased and written outside any transaction: while the CRM
    hangs, no session is idle in transaction, neither the delivery nor its link is
    row-locked, and another worker writes nothing of that record. A worker that dies
    after writing leaves the delivery to be written again once its lease lapses; its
    late result changes nothing."""
    import threading

    from adapters.crm.factory import adapter_for
    from adapters.crm.outbound import CrmWorker

    configure(client, book, sf)
    post(client, book, "/v1/crm/sync", {"provider": "salesforce"}, 200)
    globex = customer(client, book, GLOBEX)
    finalize(client, book, draft(client, book, globex["id"], line("Work", "1", "30"))["id"])
    arrived, release = threading.Event(), threading.Event()

    def hanging(settings: dict[str, Any], provider: str) -> Any:
        real = adapter_for(settings, provider)

        class Hanging:
            def update_account(self, record_id: str, values: dict[str, Any]) -> None:
                arrived.set()
                release.wait(30)
                real.update_account(record_id, values)

        return Hanging()

    slow = CrmWorker(runtime.connection, clock=Clock(), books=[book.id], adapters=hanging)
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(slow.deliver_due()))
    thread.start()
    try:
        assert arrived.wait(30), "the CRM was never called"
        assert sessions_in_transaction(database_url) == 0
        with psycopg.connect(database_url) as conn:
            try:
                leased = conn.execute(
                    "select d.status from crm_deliveries d join crm_links l"
                    " on l.book_id = d.book_id and l.record_id = d.record_id"
                    " where d.book_id = %s for update nowait",
                    (book.id,),
                ).fetchall()
            except psycopg.errors.LockNotAvailable:
                raise AssertionError("the delivery being written is row-locked") from None
            assert leased == [("sending",)]
            conn.rollback()
        # A newer event of the same record waits for the write in flight.
        post(client, book, "/v1/payments",
             {"customer": globex["id"], "amount": "30.00", "currency": "USD",
              "method": "bank_transfer"})  # fmt: skip
        assert worker(runtime, book).deliver_due() == 0 and sf.patches == []
    finally:
        release.set()
        thread.join()
    assert sf.patches[0].body["ActiveBilling_Balance_Due__c"] == "30.00"
    assert done == [3]  # then the payment's two events, one after the other
    assert deliveries(owner_conn, book.id) == [("succeeded", 1), ("succeeded", 1), ("unchanged", 1)]
    assert sf.accounts[GLOBEX]["ActiveBilling_Balance_Due__c"] == "0.00"
    writes = len(sf.patches)

    # A worker dies after its write: the lease holds, then lapses, and the write is
    # made again (the same values: a repeat changes nothing in the CRM).
    owner_conn.execute("update crm_links set pushed = '{}'::jsonb where book_id = %s", (book.id,))
    owner_conn.execute(
        "insert into crm_deliveries (book_id, id, provider, record_id, customer_id)"
        " select book_id, gen_random_uuid(), provider, record_id, customer_id from crm_links"
        " where book_id = %s and record_id = %s",
        (book.id, GLOBEX),
    )
    owner_conn.commit()
    dead = worker(runtime, book)
    [row] = dead.claim(5)
    assert dead.send_row(row).status == "succeeded" and len(sf.patches) == writes + 1
    successor = worker(runtime, book)
    assert successor.drain(10) == 0  # the lease holds (its backend is alive)
    owner_conn.execute(
        "update crm_deliveries set lease_until = clock_timestamp() - interval '1 s'"
        " where book_id = %s and status = 'sending'",
        (book.id,),
    )
    owner_conn.commit()
    assert successor.drain(10) == 1 and len(sf.patches) == writes + 2
    dead.record([row], [dead.send_row(row)])  # its late result: not ours any more
    assert deliveries(owner_conn, book.id)[-1] == ("succeeded", 1)
