"""MRR movements on a hand-built book, through the API and the CLI (issue 12):
the same exact figures, start + movements = end every month; bad ranges refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.runtime import Runtime
from tests.billing.insight_fixtures import golden_book
from tests.conftest import BookFixture
from tests.integration.http_fixtures import PROBLEM, auth, open_client
from tests.integration.test_cli import cli  # noqa: F401  (shared fixture)

GOLDEN = [
    # month, start, new, expansion, contraction, churn, reactivation, end
    ("2026-01", "0.00", "100.00", "0.00", "0.00", "0.00", "0.00", "100.00"),
    ("2026-02", "100.00", "100.00", "0.00", "0.00", "0.00", "0.00", "200.00"),
    ("2026-03", "200.00", "0.00", "50.00", "0.00", "0.00", "0.00", "250.00"),
    ("2026-04", "250.00", "0.00", "0.00", "0.00", "0.00", "0.00", "250.00"),
    ("2026-05", "250.00", "0.00", "0.00", "0.00", "-150.00", "0.00", "100.00"),
    ("2026-06", "100.00", "0.00", "0.00", "0.00", "0.00", "0.00", "100.00"),
    ("2026-07", "100.00", "0.00", "0.00", "0.00", "0.00", "100.00", "200.00"),
]
FIELDS = ("month", "start", "new", "expansion", "contraction", "churn", "reactivation", "end")


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture(scope="module")
def golden(runtime: Runtime, client: Any) -> BookFixture:
    return golden_book(runtime, client)


def test_golden_mrr_over_http(client: Any, golden: BookFixture) -> None:
    r = client.get("/v1/metrics/mrr?from=2026-01&to=2026-07", headers=auth(golden.admin_key))
    assert r.status_code == 200, r.text
    document = r.json()
    assert [tuple(m[f] for f in FIELDS) for m in document["months"]] == GOLDEN
    assert {m["currency"] for m in document["months"]} == {"USD"}
    may = document["months"][4]
    assert (may["arr"], may["customers"], may["logo_churn_rate"], may["nrr"]) == (
        "1200.00",
        1,
        "0.5000",
        "0.4000",
    )
    assert document["months"][6]["arr"] == "2400.00"
    assert document["ltv"][0]["formula"].startswith("LTV = ARPA /")
    assert [c["cohort"] for c in document["cohorts"]] == ["2026-01", "2026-02"]


def test_golden_mrr_over_cli(cli: Any, golden: BookFixture) -> None:  # noqa: F811
    book = str(golden.id)
    args = ("report", "mrr", "--book", book, "--from", "2026-01", "--to", "2026-07")
    result = cli(*args, "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [tuple(m[f] for f in FIELDS) for m in document["months"]] == GOLDEN
    text = cli(*args)
    assert text.returncode == 0, text.stderr
    assert "2026-05" in text.stdout and "-150.00" in text.stdout
    bad = cli("report", "mrr", "--book", book, "--from", "2026-13")
    assert bad.returncode == 2 and "from must be a month" in bad.stderr


@pytest.mark.parametrize(
    "query",
    ["from=2026-13&to=2026-12", "from=2026-05&to=2026-04", "from=x&to=2026-01", "interval=week"],
)
def test_bad_ranges_refused(client: Any, golden: BookFixture, query: str) -> None:
    r = client.get(f"/v1/metrics/mrr?{query}", headers=auth(golden.admin_key))
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
