"""No PHI in the ledger, the Beancount export or the ERP journal feed, on a book
whose healthcare practice runs the demo's own code (adapters/demo_industries.py:
its PATIENTS, coverages, encounters, claims, 835s and patient payments): the
demo's patient names, birth dates, member ids and diagnosis codes appear in none
of them; entries reference opaque ids only."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import date

from adapters.demo_industries import PATIENTS, Industries, open_api
from adapters.keys import Role
from adapters.runtime import Runtime
from tests.conftest import make_book
from tests.integration.http_fixtures import auth, new_key

TODAY = date(2026, 4, 1)
MONTHS = (
    (date(2026, 1, 15), date(2026, 1, 31)),
    (date(2026, 2, 15), date(2026, 2, 28)),
    (date(2026, 3, 15), date(2026, 3, 31)),
)


def _phi() -> list[str]:
    """What would identify the demo's patients, in every spelling an output could use."""
    words = []
    for first, last, born, _gender in PATIENTS:
        words += [first, last, f"{last}*{first}", born, born.replace("-", "")]
    words += [f"M{n:05d}" for n in range(1, len(PATIENTS) + 1)] + ["S00001"]  # member ids
    words += ["J06.9", "J069", "R05.9", "R059"]  # the demo's diagnoses
    return words


def test_the_demo_practice_leaves_no_phi_in_the_ledger_or_its_exports(
    runtime: Runtime,
) -> None:
    book = make_book(runtime, "USD", TODAY)
    counts: Counter[str] = Counter()
    with open_api(runtime, book.admin_key) as api:
        practice = Industries(api, runtime, book.id, random.Random(7), counts)
        practice._healthcare()
        for mid, last in MONTHS:
            practice._encounters(mid)
            practice._adjudicate(last)
            practice._patients_pay(last)
        with runtime.connection() as conn:
            (sent,) = conn.execute(
                "select id from claims where book_id = %s and interchange is not null limit 1",
                (book.id,),
            ).fetchone() or (None,)
        claim_837 = api.get(f"/v1/claims/{sent}/837").text
        erp, auditor = new_key(runtime, book.id, Role.ERP), new_key(runtime, book.id, Role.AUDITOR)
        feed = api.client.get(
            "/v1/exports/journal", params={"format": "jsonl", "limit": 10000}, headers=auth(erp)
        )
        beancount = api.client.get("/v1/exports/beancount", headers=auth(auditor))
    assert feed.status_code == 200 and beancount.status_code == 200, (feed.text, beancount.text)
    # The practice as the demo runs it: a partially paid claim (its rapid test not
    # covered), a Medigap claim answered by its own 835, statements before payments.
    assert counts["claims_submitted"] == 9 and counts["remittances"] == 3
    assert counts["claims_partially_paid"] > 0 and counts["secondary_remittances"] > 0
    assert counts["patient_statements"] >= counts["patient_payments"] > 0
    with runtime.connection() as conn:
        rows = conn.execute(
            "select e.memo, e.metadata::text, p.document, p.dimensions::text,"
            " p.customer_id::text from journal_entries e join postings p"
            " on p.book_id = e.book_id and p.entry_id = e.id where e.book_id = %s",
            (book.id,),
        ).fetchall()
        (entries,) = conn.execute(
            "select count(*) from journal_entries where book_id = %s", (book.id,)
        ).fetchone() or (0,)
    ledger = "\n".join(" ".join(str(v) for v in row) for row in rows)
    fed = [json.loads(line) for line in feed.text.splitlines()]
    assert len(fed) == entries > 12  # the feed carries every entry of the practice
    assert "Income:Patient-Services" in beancount.text and "encounter:" in ledger
    # The check can fail: the 837 the clearinghouse pulls is PHI, and the words are in it.
    shown = [w for w in _phi() if w.lower() in claim_837.lower()]
    assert "J069" in shown and any(last in shown for _f, last, _b, _g in PATIENTS), shown
    for name, text in (("ledger", ledger), ("feed", feed.text), ("beancount", beancount.text)):
        for word in _phi():
            assert word.lower() not in text.lower(), (name, word)
