"""`activebilling claims export-837` and `remittances import`, and interchange
control numbers that never repeat."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from adapters.runtime import Runtime
from billing.postgres.healthcare import next_control_number
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import make_book
from tests.healthcare.test_http import TODAY, _post, practice
from tests.healthcare.test_rules import pyx12_errors
from tests.healthcare.x12_samples import worked_claim_835
from tests.integration.test_cli import cli, client  # noqa: F401  (shared fixtures)


def test_export_837_then_import_the_835(
    cli: Any,  # noqa: F811
    client: Any,  # noqa: F811
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    book = make_book(runtime, "USD", TODAY)
    ids = practice(client, book.admin_key)
    claim = _post(client, book.admin_key, "/v1/claims", {"encounter": ids["encounter"]})
    out = tmp_path / "claim.837"
    export = ("claims", "export-837", "--claim", claim["id"], "--book", str(book.id))
    draft = cli(*export, "--out", str(out))
    assert draft.returncode == 2 and "submit it first" in draft.stderr and not out.exists()
    submitted = cli("claims", "submit", "--claim", claim["id"], "--book", str(book.id))
    assert submitted.returncode == 0, submitted.stderr
    assert "submitted" in submitted.stdout
    done = cli(*export, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert pyx12_errors(out.read_text(), tmp_path) == []
    assert cli(*export).stdout == out.read_text()  # the same interchange every time
    era = tmp_path / "era.835"
    era.write_text(worked_claim_835(claim["control_number"]))
    first = cli("remittances", "import", str(era), "--book", str(book.id), "--format", "json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert [(c["control_number"], c["paid"], c["status"]) for c in result["claims"]] == [
        (claim["control_number"], "56.00", "paid")
    ]
    again = cli("remittances", "import", str(era), "--book", str(book.id))
    assert again.returncode == 0 and "already imported, nothing posted" in again.stdout
    era.write_text(worked_claim_835(claim["control_number"], "T-OTHER", total="50.00"))
    refused = cli("remittances", "import", str(era), "--book", str(book.id))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "the file does not balance" in refused.stderr and "50.00" in refused.stderr
    missing = cli("claims", "export-837", "--claim", "nope", "--book", str(book.id))
    assert missing.returncode != 0 and "does not exist" in missing.stderr


def test_control_numbers_never_repeat_across_a_thousand_interchanges(
    client: Any,  # noqa: F811
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    """250 claims, each submitted, rejected and resubmitted until it has been sent
    four times, through `submit_claim` (the route's and the CLI's path), one round per
    transaction: 1,000 interchanges whose ISA13 / GS06 never repeat, also for the
    same claim sent again."""
    from adapters.x12.claims import submit_claim
    from billing.postgres import healthcare as store

    book = make_book(runtime, "USD", TODAY)
    ids = practice(client, book.admin_key)
    now = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    with unit_of_work(runtime.connection) as uow:
        claims = []
        for _ in range(250):
            encounter = store.create_encounter(
                uow.conn,
                book.id,
                {
                    "patient": ids["patient"],
                    "provider": ids["provider"],
                    "date_of_service": date(2026, 2, 10),
                    "diagnoses": ["J02.9"],
                    "charges": [{"code": "99213"}],
                },
            )
            claim = store.create_claim(uow.conn, book.id, {"encounter": str(encounter["id"])})
            claims.append(str(claim["id"]))
        uow.commit()
    texts: list[str] = []
    for round_ in range(4):
        with unit_of_work(runtime.connection) as uow:
            for ref in claims:
                if round_:
                    store.set_claim_status(uow.conn, book.id, ref, "rejected")
                submit_claim(uow.conn, book.id, ref, now)
                texts.append(store.get_claim(uow.conn, book.id, ref)["interchange"])
            uow.commit()
    envelopes = []
    for text in texts:
        segs = [s.split("*") for s in text.split("~\n") if s]
        isa, gs, ge, iea = segs[0], segs[1], segs[-2], segs[-1]
        assert (isa[0], gs[0], ge[0], iea[0]) == ("ISA", "GS", "GE", "IEA")
        assert int(isa[13]) == int(gs[6]) == int(ge[2]) == int(iea[2])
        envelopes.append((isa[13], gs[6]))
    isa13 = [e[0] for e in envelopes]
    gs06 = [e[1] for e in envelopes]
    assert len(set(isa13)) == len(set(gs06)) == 1000
    assert isa13 == sorted(isa13)  # handed out in order, across the four transactions
    with runtime.connection() as conn:
        kept = conn.execute(
            "select count(distinct interchange_control), count(*), max(interchange_control)"
            " from claims where book_id = %s and status = 'submitted'",
            (book.id,),
        ).fetchone()
    assert kept == (250, 250, int(isa13[-1]))  # each claim keeps its last interchange
    for text in (texts[0], texts[-1]):  # the generator's output stays valid
        assert pyx12_errors(text, tmp_path) == []


def test_next_control_number_continues_across_transactions(runtime: Runtime) -> None:
    book = make_book(runtime, "USD", TODAY)
    with unit_of_work(runtime.connection) as uow:
        first = [next_control_number(uow.conn, book.id) for _ in range(5)]
        uow.commit()
    with unit_of_work(runtime.connection) as uow:
        second = [next_control_number(uow.conn, book.id) for _ in range(5)]
        uow.commit()
    assert first + second == list(range(1, 11))
