"""The demo's industry customers, driven through the HTTP API in-process.

`adapters/demo.py` runs the SaaS core (subscriptions, payments by hand, changes,
credit notes) through the service functions. The four markets beside it go
through the public API, exactly as a client would call it, so the demo shows
what API.md promises and exercises the same handlers:

- payments: card customers on `charge_automatically` with Stripe's test cards
  on the built-in fake gateway (a decline, a dispute, payouts on the clock);
- SaaS usage: a usage price on a meter, events sent through the month;
- telecom: prepaid wallets with top-ups and session reservations, postpaid
  subscribers on a rate plan with CDRs rated every month;
- healthcare: a practice with a payer, encounters, claims (837P), remittances
  (835) written by a simulated payer — paid, partial with patient share,
  a denial — and patients paying their share;
- MSP: a managed-services contract with device counts, a retainer that
  overruns, a fixed-fee project with milestones, time entries approved.

Everything is deterministic for a seed: ids sent are counters, dates follow
the simulated clock, and choices come from the demo's seeded generator.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from litestar.testing import TestClient

from adapters.gateways.collection import collect_unattempted
from adapters.runtime import Runtime
from adapters.x12.x835_writer import ClaimPayment, ServicePayment, remittance_835

SEPA_CUSTOMERS = [
    ("Müller Maschinenbau GmbH", "DE02120300000000202051", "BYLADEM1001"),
    ("Brasserie Lefèvre SARL", "FR1420041010050500013M02606", "PSSTFRPPLIL"),
]
CARD_CUSTOMERS = [
    ("Northwind Cards", "pm_card_visa"),
    ("Tailspin Retail", "pm_card_chargeDeclinedInsufficientFunds"),
    ("Fabrikam Shop", "pm_card_createDispute"),
    ("Contoso Online", "pm_card_visa"),
]
USAGE_CUSTOMERS = ["Litware API", "Adatum Data", "Proseware Cloud"]
PREPAID = ["+447700900101", "+447700900102", "+447700900103"]
POSTPAID = ["+447700900201", "+447700900202"]
PATIENTS = [
    ("Avery", "Quinn", "1984-02-29", "F"),
    ("Jordan", "Blake", "1971-07-14", "M"),
    ("Morgan", "Reyes", "1990-11-03", "U"),
]
# The simulated payer's fee schedule: code → (billed, allowed).
CHARGES = {"99213": ("120.00", "72.00"), "87880": ("80.00", "48.00")}


class ApiFailed(RuntimeError):
    """The demo called the API and got an answer it did not expect."""


class Api:
    """A thin JSON client over the in-process app, raising on any unexpected status."""

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}

    def post(self, path: str, body: Any = None, *, ok: tuple[int, ...] = (200, 201)) -> Any:
        answer = self.client.post(path, json=body if body is not None else {}, headers=self.headers)
        if answer.status_code not in ok:
            raise ApiFailed(f"POST {path} → {answer.status_code}: {answer.text}")
        return answer.json()

    def get(self, path: str) -> Any:
        answer = self.client.get(path, headers=self.headers)
        if answer.status_code != 200:
            raise ApiFailed(f"GET {path} → {answer.status_code}: {answer.text}")
        return answer

    def upload(self, path: str, name: str, content: bytes) -> Any:
        answer = self.client.post(path, files={"file": (name, content)}, headers=self.headers)
        if answer.status_code not in (200, 201):
            raise ApiFailed(f"POST {path} → {answer.status_code}: {answer.text}")
        return answer.json()


@contextmanager
def open_api(runtime: Runtime, key: str) -> Iterator[Api]:
    from adapters.http.app import create_app  # the app imports the CLI's neighbours

    # httpx and the access log write a line per in-process request; the demo sums them up.
    for noisy in ("httpx", "activebilling.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with TestClient(create_app(runtime, run_sealer=False)) as client:
        yield Api(client, key)


class Industries:
    def __init__(
        self,
        api: Api,
        runtime: Runtime,
        book_id: uuid.UUID,
        rng: random.Random,
        counts: Counter[str],
    ) -> None:
        self.api = api
        self.book_id = book_id
        self.runtime = runtime
        self.random = rng
        self.counts = counts
        self.serial = 0
        self.created: list[str] = []  # customer ids in the order they were made
        self.card_customers: list[str] = []
        self.usage_customers: list[str] = []
        self.wallets: list[str] = []
        self.payer = ""
        self.secondary_payer = ""
        self.provider = ""
        self.patients: list[str] = []
        self.claims: list[dict[str, Any]] = []  # submitted, waiting for the payer
        # Submitted to Medigap, waiting: (control number, code → the patient's share).
        self.secondary_claims: list[tuple[str, dict[str, Decimal]]] = []
        self.contracts: dict[str, str] = {}
        self.devices = 40
        self.milestones_done = 0
        self.roaming_pack = ""
        self.vouchers: list[str] = []

    def client_post_or_402(self, path: str, body: dict[str, Any]) -> bool:
        """A sale from a wallet that may be short: True when it went through."""
        return "id" in self.api.post(path, body, ok=(201, 402))

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial:06d}"

    # --- set-up, on the first day -------------------------------------------------

    def setup(self, start: date) -> None:
        self._cards(start)
        self._sepa(start)
        self._usage(start)
        self._telecom(start)
        self._healthcare()
        self._services(start)

    def _customer(self, name: str, currency: str = "USD", **extra: Any) -> str:
        body = {
            "name": name,
            "currency": currency,
            "email": f"{name.split()[0].lower()}@example.com",
        }
        customer_id = str(self.api.post("/v1/customers", {**body, **extra})["id"])
        self.created.append(customer_id)
        return customer_id

    def _cards(self, start: date) -> None:
        pro = self.api.post("/v1/products", {"name": "SaaS Pro (card)"})["id"]
        price = self.api.post(
            "/v1/prices",
            {
                "product": pro,
                "currency": "USD",
                "charge_model": "flat",
                "unit_amount": "108.00",
                "interval": "month",
            },
        )["id"]
        for name, token in CARD_CUSTOMERS:
            cid = self._customer(name, collection_method="charge_automatically")
            self.api.post(
                f"/v1/customers/{cid}/payment-methods",
                {"type": "card", "gateway": "fake", "token": token, "default": True},
            )
            self.api.post(
                "/v1/subscriptions",
                {
                    "customer": cid,
                    "items": [{"price": price, "quantity": 1}],
                    "start_date": start.isoformat(),
                },
            )
            self.card_customers.append(cid)
            self.counts["card_customers"] += 1

    def _sepa(self, start: date) -> None:
        """Two EUR customers paying by SEPA Direct Debit: a monthly collection run debits
        their mandates (pain.008), in a USD book, so each debit realizes an FX difference."""
        self.api.client.patch(
            "/v1/book/settings",
            json={
                "sepa_creditor": {
                    "name": "Demo Billing GmbH",
                    "iban": "DE89370400440532013000",
                    "bic": "COBADEFFXXX",
                    "creditor_id": "DE98ZZZ09999999999",
                }
            },
            headers=self.api.headers,
        ).raise_for_status()
        self._fx_rates(start)
        product = self.api.post("/v1/products", {"name": "SaaS Pro (EUR)"})["id"]
        price = self.api.post(
            "/v1/prices",
            {
                "product": product,
                "currency": "EUR",
                "charge_model": "flat",
                "unit_amount": "79.00",
                "interval": "month",
            },
        )["id"]
        for n, (name, iban, bic) in enumerate(SEPA_CUSTOMERS, 1):
            cid = self._customer(name, "EUR", tax_rate="0.19", payment_terms_days=7)
            self.api.post(
                f"/v1/customers/{cid}/payment-methods",
                {
                    "type": "sepa_debit",
                    "iban": iban,
                    "bic": bic,
                    "mandate_id": f"DEMO-M{n}",
                    "mandate_date": start.isoformat(),
                    "default": True,
                },
            )
            self.api.post(
                "/v1/subscriptions",
                {
                    "customer": cid,
                    "items": [{"price": price, "quantity": 1}],
                    "start_date": start.isoformat(),
                },
            )

    def _fx_rates(self, day: date) -> None:
        """The day's EUR and GBP rates to the book's USD (with a rate table, every foreign
        receivable is carried at its invoice date's rate)."""
        rates = []
        for base, around in (("EUR", "1.08"), ("GBP", "1.27")):
            rate = Decimal(around) + Decimal(self.random.randint(-30, 30)) / 1000
            rates.append({"date": day.isoformat(), "base": base, "quote": "USD", "rate": str(rate)})
        self.api.post("/v1/fx-rates", rates)

    def collect_direct_debits(self, today: date) -> None:
        run = self.api.post(
            "/v1/collection-runs", {"scheme": "sepa", "as_of": today.isoformat()}, ok=(201, 422)
        )
        if "id" in run:
            self.counts["sepa_collection_runs"] += 1
            self.counts["sepa_debits"] += len(run.get("transactions", []))

    def _usage(self, start: date) -> None:
        self.api.post("/v1/meters", {"metric": "api_calls", "aggregation": "sum"})
        product = self.api.post("/v1/products", {"name": "API calls"})["id"]
        usage_price = self.api.post(
            "/v1/prices",
            {
                "product": product,
                "currency": "USD",
                "charge_model": "graduated",
                "interval": "month",
                "metric": "api_calls",
                "aggregation": "sum",
                "tiers": [
                    {"up_to": 1000, "unit_amount": "0.10"},
                    {"up_to": 10000, "unit_amount": "0.05"},
                    {"up_to": None, "unit_amount": "0.01"},
                ],
            },
        )["id"]
        base = self.api.post("/v1/products", {"name": "API platform"})["id"]
        platform = self.api.post(
            "/v1/prices",
            {
                "product": base,
                "currency": "USD",
                "charge_model": "flat",
                "unit_amount": "49.00",
                "interval": "month",
            },
        )["id"]
        for name in USAGE_CUSTOMERS:
            cid = self._customer(name)
            self.api.post(
                "/v1/subscriptions",
                {
                    "customer": cid,
                    "items": [{"price": platform, "quantity": 1}, {"price": usage_price}],
                    "start_date": start.isoformat(),
                },
            )
            self.usage_customers.append(cid)

    def _telecom(self, start: date) -> None:
        self.api.post("/v1/rate-plans", rate_plan(start))
        for number in PREPAID:
            cid = self._customer(f"Prepaid {number[-3:]}", "GBP")
            wallet = self.api.post(
                "/v1/wallets", {"customer": cid, "currency": "GBP", "low_balance_threshold": "5.00"}
            )["id"]
            self.api.post(f"/v1/wallets/{wallet}/top-ups", {"amount": "20.00"})
            self.wallets.append(str(wallet))
            self.counts["wallet_top_ups"] += 1
        plan = self.api.post("/v1/products", {"name": "Mobile postpaid plan"})["id"]
        fee = self.api.post(
            "/v1/prices",
            {
                "product": plan,
                "currency": "GBP",
                "charge_model": "flat",
                "unit_amount": "10.00",
                "interval": "month",
            },
        )["id"]
        for number in POSTPAID:  # the plan fee in advance, its CDRs in arrears
            cid = self._customer(f"Postpaid {number[-3:]}", "GBP")
            self.api.post(
                "/v1/subscriptions",
                {
                    "customer": cid,
                    "items": [{"price": fee, "quantity": 1}, {"rate_plan": "Demo Mobile"}],
                    "subscriber": number,
                    "start_date": start.isoformat(),
                },
            )
        pack = self.api.post("/v1/products", {"name": "Roaming pack"})["id"]
        self.roaming_pack = self.api.post(
            "/v1/prices",
            {"product": pack, "currency": "GBP", "charge_model": "flat", "unit_amount": "5.00"},
        )["id"]
        sold = self.api.post("/v1/vouchers", {"currency": "GBP", "amount": "10.00", "count": 6})
        self.vouchers = list(sold["codes"])

    def _healthcare(self) -> None:
        self.payer = self.api.post("/v1/payers", {"name": "Acme Health", "payer_id": "ACME1"})["id"]
        self.secondary_payer = self.api.post(
            "/v1/payers", {"name": "Blue Meadow Medigap", "payer_id": "BMM01"}
        )["id"]
        self.provider = self.api.post(
            "/v1/providers",
            {
                "name": "Good Health Clinic",
                "npi": "1234567893",
                "tax_id": "123456789",
                "taxonomy": "207Q00000X",
                "address": {
                    "line1": "1 Main St",
                    "city": "Springfield",
                    "state": "IL",
                    "postal_code": "62701",
                },
            },
        )["id"]
        self.api.post(
            "/v1/fee-schedules",
            {
                "name": "Standard",
                "items": [{"code": c, "amount": b} for c, (b, _) in CHARGES.items()],
            },
        )
        for n, (first, last, born, gender) in enumerate(PATIENTS, 1):
            patient = self.api.post(
                "/v1/patients",
                {
                    "first_name": first,
                    "last_name": last,
                    "date_of_birth": born,
                    "gender": gender,
                    "address": {
                        "line1": f"{n} Elm St",
                        "city": "Springfield",
                        "state": "IL",
                        "postal_code": "62701",
                    },
                },
            )["id"]
            self.api.post(
                "/v1/coverages",
                {"patient": patient, "payer": self.payer, "member_id": f"M{n:05d}"},
            )
            if n == 1:  # one patient has a secondary (Medigap) coverage
                self.api.post(
                    "/v1/coverages",
                    {
                        "patient": patient,
                        "payer": self.secondary_payer,
                        "member_id": "S00001",
                        "priority": "secondary",
                    },
                )
            self.patients.append(str(patient))

    def _services(self, start: date) -> None:
        self.api.post(
            "/v1/rate-cards",
            {
                "name": "Standard",
                "currency": "USD",
                "rates": {"engineer": "120.00", "senior_engineer": "160.00"},
                "default_rate": "100.00",
            },
        )
        contracts: dict[str, tuple[str, dict[str, Any]]] = {
            "managed": (
                "Harbor Dental Group",
                {
                    "type": "managed_services",
                    "monthly_fee": "500.00",
                    "unit_price": "12.00",
                    "proration": "daily",
                },
            ),
            "retainer": (
                "Summit Legal",
                {
                    "type": "retainer",
                    "included_hours": "20",
                    "hourly_rate": "150.00",
                    "overage_rate": "175.00",
                    "rollover": "carry_over",
                    "rollover_max_hours": "5",
                },
            ),
            "project": (
                "Lakeside Schools",
                {
                    "type": "fixed_fee",
                    "milestones": [
                        {"name": "Design", "amount": "4000.00"},
                        {"name": "Cutover", "amount": "6000.00"},
                    ],
                },
            ),
            "hours": (
                "Riverside Clinic IT",
                {
                    "type": "time_and_materials",
                    "cap": "6000.00",
                    "rounding": {"increment_minutes": 15, "mode": "up", "minimum_minutes": 30},
                },
            ),
        }
        for key, (name, terms) in contracts.items():
            cid = self._customer(name)
            body = {"customer": cid, "start_date": start.isoformat(), **terms}
            self.contracts[key] = str(self.api.post("/v1/contracts", body)["id"])
        self.api.post(
            f"/v1/contracts/{self.contracts['managed']}/counts",
            {"date": start.isoformat(), "quantity": self.devices},
        )
        self.counts["msp_contracts"] += len(contracts)

    # --- each month -----------------------------------------------------------------

    def after_billing_run(self, today: date) -> None:
        """Auto-collection of the card customers' new invoices, as the billing-run route does."""
        for attempt in collect_unattempted(self.runtime.connection, self.book_id, today):
            self.counts[f"card_attempts_{attempt.outcome}"] += 1
        run = self.api.post("/v1/contract-billing-runs", {})
        self.counts["msp_invoices"] += len(run.get("invoices", []))

    def mid_month(self, month_start: date, today: date) -> None:
        self._send_usage(month_start, today)
        self._sessions_and_cdrs(month_start, today)
        self._encounters(today)
        self._time_entries(month_start, today)
        self._disputes()

    def month_end(self, month_start: date, last: date) -> None:
        self._fx_rates(last + timedelta(days=1))  # next month's rate, before its invoices
        self.api.post("/v1/cdr-ratings", {"through": last.isoformat()})
        self.counts["cdr_rating_runs"] += 1
        # Usage rated but not yet invoiced is accrued to Unbilled (the invoice relieves it).
        self.api.post("/v1/usage-accruals", {"as_of": last.isoformat()})
        self.counts["usage_accruals"] += 1
        if self.vouchers:  # a prepaid subscriber tops up with a scratch card
            wallet = self.wallets[month_start.month % len(self.wallets)]
            code = self.vouchers.pop(0)
            self.api.post(f"/v1/wallets/{wallet}/voucher-redemptions", {"code": code})
            self.counts["vouchers_redeemed"] += 1
        self._adjudicate(last)
        self._patients_pay(last)
        if self.milestones_done < 2 and month_start.month in (2, 4):
            name = ["Design", "Cutover"][self.milestones_done]
            self.api.post(f"/v1/contracts/{self.contracts['project']}/milestones/{name}/complete")
            self.milestones_done += 1
            self.counts["milestones_completed"] += 1
        self.devices += self.random.choice([-1, 0, 2, 7])
        self.api.post(
            f"/v1/contracts/{self.contracts['managed']}/counts",
            {"date": last.isoformat(), "quantity": self.devices},
        )

    def _send_usage(self, month_start: date, today: date) -> None:
        events = []
        for cid in self.usage_customers:
            for _ in range(self.random.randint(5, 15)):
                day = month_start + timedelta(
                    days=self.random.randint(0, (today - month_start).days)
                )
                events.append(
                    {
                        "id": self.next_id("evt"),
                        "customer": cid,
                        "metric": "api_calls",
                        "quantity": str(self.random.randint(50, 1500)),
                        "timestamp": _at(day, 9 + self.random.randint(0, 8)),
                        "properties": {"region": self.random.choice(["eu", "us"])},
                    }
                )
        answer = self.api.post("/v1/usage-events", events)
        self.counts["usage_events"] += int(answer["accepted"])

    def _sessions_and_cdrs(self, month_start: date, today: date) -> None:
        for wallet in self.wallets:
            for _ in range(self.random.randint(2, 4)):
                held = self.api.post(
                    f"/v1/wallets/{wallet}/reservations",
                    {"amount": "2.00", "ttl_seconds": 600, "partial": True},
                )
                if held["status"] == "refused" or Decimal(held["amount"]) <= 0:
                    continue
                used = min(Decimal(held["amount"]), Decimal(self.random.randint(20, 180)) / 100)
                self.api.post(
                    f"/v1/wallets/{wallet}/reservations/{held['id']}/capture",
                    {"amount": f"{used:.2f}"},
                )
                self.counts["prepaid_sessions"] += 1
            if self.random.random() < 0.2:  # a roaming pack bought from the wallet
                sold = self.client_post_or_402(
                    f"/v1/wallets/{wallet}/add-ons", {"price": self.roaming_pack}
                )
                self.counts["roaming_packs" if sold else "roaming_packs_refused"] += 1
            balance = Decimal(self.api.get(f"/v1/wallets/{wallet}").json()["balance"])
            if balance < 5:
                self.api.post(f"/v1/wallets/{wallet}/top-ups", {"amount": "20.00"})
                self.counts["wallet_top_ups"] += 1
        cdrs = []
        days = (today - month_start).days
        for number in POSTPAID:
            for _ in range(self.random.randint(10, 20)):
                day = month_start + timedelta(days=self.random.randint(0, days))
                kind = self.random.choice(["voice", "voice", "voice", "sms", "data"])
                record: dict[str, Any] = {
                    "id": self.next_id("cdr"),
                    "subscriber": number,
                    "event_type": kind,
                    "start": _at(day, self.random.randint(6, 21)),
                    "destination": self.random.choice(
                        ["+447700900999", "+442079460000", "+33140000000"]
                    ),
                    "roaming": False,
                }
                if kind == "voice":
                    record["duration_seconds"] = str(self.random.randint(5, 900))
                elif kind == "sms":
                    record["count"] = "1"
                else:
                    record["bytes"] = str(self.random.randint(100_000, 90_000_000))
                cdrs.append(record)
        answer = self.api.post("/v1/cdrs", {"cdrs": cdrs})
        self.counts["cdrs"] += int(answer["accepted"])

    def _encounters(self, today: date) -> None:
        for patient in self.patients:
            encounter = self.api.post(
                "/v1/encounters",
                {
                    "patient": patient,
                    "provider": self.provider,
                    "date_of_service": (today - timedelta(days=3)).isoformat(),
                    "diagnoses": ["J06.9", "R05.9"],
                    "charges": [
                        {"code": "99213", "diagnosis_pointers": [1, 2]},
                        {"code": "87880", "diagnosis_pointers": [1]},
                    ],
                },
            )
            claim = self.api.post("/v1/claims", {"encounter": encounter["id"]})
            self.api.post(f"/v1/claims/{claim['id']}/submit")  # control number, 837P stored
            self.api.get(f"/v1/claims/{claim['id']}/837")  # as the clearinghouse pulls it
            self.claims.append(claim)
            self.counts["claims_submitted"] += 1

    def _adjudicate(self, last: date) -> None:
        """The simulated payer answers every submitted claim in one 835: most paid at the
        allowed amount less the patient's share, some partially (deductible), a few denied;
        the second patient's rapid test is never covered (CO-96), so those claims end
        partially paid. The Medigap payer then answers last month's secondary claims."""
        self._adjudicate_secondary(last)
        if not self.claims:
            return
        paid_claims: list[ClaimPayment] = []
        secondary: list[tuple[str, dict[str, Decimal]]] = []
        for claim in self.claims:
            roll = self.random.random()
            denied = roll < 0.12
            partial = not denied and claim["patient"] == self.patients[1]
            lines = []
            shares: dict[str, Decimal] = {}  # code → what the patient owes after the primary
            for code, (billed, allowed) in CHARGES.items():
                b, a = Decimal(billed), Decimal(allowed)
                if denied or (partial and code == "87880"):  # not covered: nothing paid
                    lines.append(ServicePayment(code, b, Decimal(0), [("CO", "96", b)]))
                    continue
                deductible = (a / 2) if roll < 0.35 else Decimal(0)
                coinsurance = ((a - deductible) * Decimal("0.20")).quantize(Decimal("0.01"))
                paid = a - deductible - coinsurance
                adjustments = [("CO", "45", b - a), ("PR", "2", coinsurance)]
                if deductible:
                    adjustments.insert(1, ("PR", "1", deductible))
                lines.append(ServicePayment(code, b, paid, adjustments))
                shares[code] = deductible + coinsurance
            paid_claims.append(ClaimPayment(claim["control_number"], "4" if denied else "1", lines))
            if claim["patient"] == self.patients[0] and not denied:
                secondary.append((claim["encounter"], shares))
            outcome = "denied" if denied else "partially_paid" if partial else "paid"
            self.counts[f"claims_{outcome}"] += 1
        text = remittance_835(
            paid_claims,
            trace=self.next_id("EFT"),
            paid_on=last,
            payer="ACME HEALTH",
            payee="GOOD HEALTH CLINIC",
            npi="1234567893",
        )
        self.api.upload("/v1/remittances", "era.835", text.encode())
        self.counts["remittances"] += 1
        self.claims = []
        for encounter, shares in secondary[:1]:  # the Medigap claim carries the primary's
            claim = self.api.post(
                "/v1/claims", {"encounter": encounter, "payer": self.secondary_payer}
            )
            self.api.post(f"/v1/claims/{claim['id']}/submit")
            self.secondary_claims.append((claim["control_number"], shares))
            self.counts["secondary_claims"] += 1

    def _adjudicate_secondary(self, last: date) -> None:
        """Medigap pays what the primary left to the patient; the primary's share is
        OA-23 (the impact of the prior payer's adjudication), which posts nothing."""
        if not self.secondary_claims:
            return
        paid_claims = []
        for control_number, shares in self.secondary_claims:
            lines = []
            for code, (billed, _allowed) in CHARGES.items():
                b, share = Decimal(billed), shares.get(code, Decimal(0))
                lines.append(ServicePayment(code, b, share, [("OA", "23", b - share)]))
            paid_claims.append(ClaimPayment(control_number, "2", lines))  # 2: as secondary
        text = remittance_835(
            paid_claims,
            trace=self.next_id("MG"),
            paid_on=last,
            payer="BLUE MEADOW MEDIGAP",
            payee="GOOD HEALTH CLINIC",
            npi="1234567893",
        )
        self.api.upload("/v1/remittances", "medigap.835", text.encode())
        self.counts["secondary_remittances"] += 1
        self.secondary_claims = []

    def _patients_pay(self, last: date) -> None:
        """Each patient with something due gets a statement (after insurance); most pay it."""
        for patient in self.patients:
            statement = self.api.get(f"/v1/patients/{patient}/statement").json()  # book today
            owed = Decimal(statement["totals"]["amount_due"])
            if owed <= 0:
                continue
            self.counts["patient_statements"] += 1
            if self.random.random() < 0.7:
                self.api.post(
                    f"/v1/patients/{patient}/payments", {"amount": f"{owed:.2f}", "method": "card"}
                )
                self.counts["patient_payments"] += 1

    def _time_entries(self, month_start: date, today: date) -> None:
        people = [("Dana", "engineer"), ("Lee", "senior_engineer"), ("Sam", "engineer")]
        # The retainer overruns its 20 hours in some months; T&M hours every month.
        for key, count in (("retainer", self.random.randint(8, 14)), ("hours", 6)):
            for _ in range(count):
                person, role = self.random.choice(people)
                day = month_start + timedelta(
                    days=self.random.randint(0, (today - month_start).days)
                )
                entry = self.api.post(
                    "/v1/time-entries",
                    {
                        "person": person,
                        "contract": self.contracts[key],
                        "date": day.isoformat(),
                        "minutes": self.random.choice([37, 60, 90, 120, 150]),
                        "role": role,
                        "ticket": self.next_id("T"),
                        "notes": "support",
                    },
                    ok=(201, 409),  # an overlapping entry for one person is refused
                )
                if "id" in entry and entry.get("status") == "draft":
                    self.api.post(f"/v1/time-entries/{entry['id']}/approve")
                    self.counts["time_entries_approved"] += 1

    def _disputes(self) -> None:
        for dispute in self.api.get("/v1/disputes").json()["data"]:
            if dispute["status"] == "needs_response":
                outcome = self.random.choice(["won", "lost"])
                self.api.post(f"/v1/disputes/{dispute['id']}/close", {"outcome": outcome})
                self.counts[f"disputes_{outcome}"] += 1


def rate_plan(start: date) -> dict[str, Any]:
    return {
        "name": "Demo Mobile",
        "effective_from": start.isoformat(),
        "currency": "GBP",
        "time_zone": "Europe/London",
        "bands": [
            {"name": "peak", "days": [1, 2, 3, 4, 5], "from": "08:00", "to": "18:00"},
            {"name": "off_peak", "days": [1, 2, 3, 4, 5, 6, 7], "from": "00:00", "to": "24:00"},
        ],
        "zones": [
            {"name": "uk", "prefix": "+44"},
            {"name": "london", "prefix": "+4420"},
            {"name": "france", "prefix": "+33"},
        ],
        "rates": [
            {
                "zone": "uk",
                "event_type": "voice",
                "band": "peak",
                "unit_amount": "0.10",
                "increment": "60/60",
            },
            {
                "zone": "uk",
                "event_type": "voice",
                "band": "off_peak",
                "unit_amount": "0.05",
                "increment": "60/60",
            },
            {"zone": "london", "event_type": "voice", "unit_amount": "0.08", "increment": "60/1"},
            {
                "zone": "france",
                "event_type": "voice",
                "unit_amount": "0.60",
                "increment": "30/6",
                "setup_amount": "0.10",
            },
            {"event_type": "sms", "unit_amount": "0.05"},
            {"event_type": "data", "unit_amount": "0.02", "increment": "1000000/1000000"},
        ],
        "allowances": [
            {"event_type": "voice", "quantity": "6000"},
            {"event_type": "sms", "quantity": "5"},
        ],
    }


def _at(day: date, hour: int) -> str:
    return datetime.combine(day, time(hour, 0), tzinfo=UTC).isoformat()
