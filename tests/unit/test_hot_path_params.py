"""The HTTP post's one-entry shortcuts say what the general code says: the statement's
parameters are PreparedEntries' for a batch of one, and the 201 body around
`recorded_at` is entry_json's for the posted entry."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import date, datetime
from typing import Any

import msgspec
import pytest
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer

from adapters.http import hot_path
from adapters.http.ledger_api import entry_json
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money
from ledger.postgres import posting as entry_store

BOOK = uuid.UUID("0190c0de-0000-7000-8000-000000000001")
ENTRY_ID = uuid.UUID("0190c0de-0000-7000-8000-0000000000aa")
NAMES = [
    "Assets:Bank:Operating",
    "Income:Subscriptions",
    "Liabilities:Tax-Payable",
    "Assets:Receivable:Trade",
]
ACCOUNT_IDS = {name: uuid.uuid5(BOOK, name) for name in NAMES}


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def entry(**changes: Any) -> JournalEntry:
    fields: dict[str, Any] = {
        "effective_date": date(2026, 11, 30),
        "memo": "bench",
        "postings": [
            Posting("Assets:Bank:Operating", usd("922.77")),
            Posting("Income:Subscriptions", usd("-838.89")),
            Posting("Liabilities:Tax-Payable", usd("-83.88")),
        ],
    }
    fields.update(changes)
    effective_date, memo, postings = (
        fields.pop("effective_date"),
        fields.pop("memo"),
        fields.pop("postings"),
    )
    return build_entry(effective_date, memo, postings, **fields)


CASES = {
    "usual": entry(idempotency_key="k-1"),
    "no-key": entry(),
    "two-postings": entry(
        postings=[
            Posting("Assets:Receivable:Trade", usd("10.50")),
            Posting("Income:Subscriptions", usd("-10.50")),
        ],
        idempotency_key="k-2",
    ),
    "whole-amounts": entry(
        postings=[
            Posting("Assets:Bank:Operating", usd("10")),
            Posting("Income:Subscriptions", usd("-10.0")),
        ]
    ),
    "zero-decimal-currency": entry(
        postings=[
            Posting("Assets:Bank:Operating", Money.of("1200", "JPY")),
            Posting("Income:Subscriptions", Money.of("-1200", "JPY")),
        ]
    ),
    "three-decimal-currency": entry(
        postings=[
            Posting("Assets:Bank:Operating", Money.of("1.5", "KWD")),
            Posting("Income:Subscriptions", Money.of("-1.500", "KWD")),
        ]
    ),
    "quoting": entry(memo='a "quoted" memo \\ with a backslash, {braces}', idempotency_key='k"3'),
    "metadata-and-dimensions": entry(
        metadata={"source": "crm", "n": 3},
        postings=[
            Posting("Assets:Bank:Operating", usd("5.00"), dimensions={"region": "EU"}),
            Posting("Income:Subscriptions", usd("-5.00")),
        ],
    ),
    "customer-and-document": entry(
        postings=[
            Posting("Assets:Receivable:Trade", usd("5.00"), customer="c-1"),
            Posting("Income:Subscriptions", usd("-5.00"), document="invoice:in_1"),
        ],
    ),
    "reverses": entry(reverses=str(uuid.uuid5(BOOK, "original"))),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_one_entrys_params_are_the_batch_of_ones(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entry_store, "new_entry_ids", lambda count: [ENTRY_ID] * count)
    the_entry = CASES[case]
    batch = entry_store.PreparedEntries(BOOK, [the_entry], ACCOUNT_IDS)
    entry_id, id_text, key, params = entry_store.PreparedEntries.one(BOOK, the_entry, ACCOUNT_IDS)
    assert (entry_id, id_text, key) == (batch.ids[0], str(batch.ids[0]), batch.keys[0])
    assert params == batch.params


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_the_answers_head_and_tail_are_entry_jsons(case: str) -> None:
    the_entry = CASES[case]
    key = the_entry.idempotency_key or f"auto:{ENTRY_ID}"
    recorded_at = datetime(2026, 11, 30, 12, 0, 1, 5)
    posted = entry_store.PostedEntry(
        id=ENTRY_ID,
        book_id=BOOK,
        effective_date=the_entry.effective_date,
        recorded_at=recorded_at,
        memo=the_entry.memo,
        metadata=dict(the_entry.metadata),
        idempotency_key=key,
        reverses=None,
        postings=the_entry.postings,
    )
    head, tail = hot_path._head_and_tail(str(ENTRY_ID), key, the_entry)
    # The statement puts the JSON string of recorded_at between them.
    stamped = head + msgspec.json.encode(recorded_at.isoformat()).decode() + tail
    assert stamped.encode() == msgspec.json.encode(entry_json(posted))


def _psycopg_sends(statement: str, params: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """What psycopg's execute sends for `statement`: the query with its $n named
    back, and each parameter's (type oid, format, value)."""
    query = PostgresQuery(Transformer())
    query.convert(statement, params)
    names = query._order
    assert names is not None and query.params is not None and query.types is not None
    sent = {
        name: (query.types[i], int(query.formats[i]), query.params[i])
        for i, name in enumerate(names)
    }
    text = re.sub(rb"\$(\d+)", lambda m: b"%(" + names[int(m[1]) - 1].encode() + b")s", query.query)
    return text, sent


def _libpq_sends(statement: Any, params: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    names = statement.texts + statement.uuids
    values = statement.values(params)
    sent = {
        name: (statement.types[i], statement.formats[i], values[i]) for i, name in enumerate(names)
    }
    text = re.sub(
        rb"\$(\d+)", lambda m: b"%(" + names[int(m[1]) - 1].encode() + b")s", statement.query
    )
    return text, sent


@pytest.mark.parametrize("http_key", ["k-1", None], ids=["keyed", "no-key"])
@pytest.mark.parametrize("case", ["usual", "quoting", "customer-and-document"])
def test_the_statement_goes_as_psycopg_would_send_it(case: str, http_key: str | None) -> None:
    """The hot statement bypasses psycopg's execute: the server gets the same text,
    and each parameter with the same type, format and bytes (so the same plan)."""
    _, id_text, key, params = entry_store.PreparedEntries.one(BOOK, CASES[case], ACCOUNT_IDS)
    head, tail = hot_path._head_and_tail(id_text, key, CASES[case])
    params |= {
        "head": head,
        "tail": tail,
        "key_id": uuid.uuid5(BOOK, "key"),
        "role": "admin",
        "path": "/v1/journal-entries",
        "http_key": http_key,
        "request_id": "r-1",
        "fingerprint": "f" * 64,
    }
    for raw, statement in (
        (hot_path._POST, hot_path._POST_STATEMENT),
        (hot_path._POST_AND_STORE, hot_path._POST_AND_STORE_STATEMENT),
    ):
        assert _libpq_sends(statement, params) == _psycopg_sends(raw, params)


def test_posts_together_send_the_batchs_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several posts' parameters joined are PreparedEntries' for the batch of
    their entries (same ids), and each post's own values go in the same order."""
    entries = [CASES[c] for c in ("usual", "no-key", "quoting", "metadata-and-dimensions")]
    ids = [uuid.uuid5(BOOK, f"entry {n}") for n in range(len(entries))]
    monkeypatch.setattr(entry_store, "new_entry_ids", lambda count: ids[:count])
    batch = entry_store.PreparedEntries(BOOK, entries, ACCOUNT_IDS)
    key_id = uuid.uuid5(BOOK, "key")

    async def build() -> dict[str, Any]:
        posts = []
        for n, (entry_id, the_entry) in enumerate(zip(ids, entries, strict=True)):
            _, _, _, params = entry_store.PreparedEntries.one(
                BOOK, the_entry, ACCOUNT_IDS, entry_id
            )
            http_key = None if n % 2 else f'h"{n}'
            params |= {
                "head": f"head {n}",
                "tail": f"tail {n}",
                "key_id": None if n == 3 else key_id,
                "role": "admin",
                "path": "/v1/journal-entries",
                "http_key": http_key,
                "request_id": f"r-{n}",
                "fingerprint": None if http_key is None else "f" * 64,
            }
            posts.append(hot_path._Post(params, entry_id.bytes))
        return hot_path._together(posts)

    together = asyncio.run(build())
    assert {k: together[k] for k in batch.params} == batch.params
    assert together["http_keys"] == '{"h\\"0",NULL,"h\\"2",NULL}'
    assert together["key_ids"] == '{"' + '","'.join([str(key_id)] * 3) + '",NULL}'
    assert together["request_ids"] == '{"r-0","r-1","r-2","r-3"}'
    assert together["fingerprints"] == "{" + ",".join(['"' + "f" * 64 + '"', "NULL"] * 2) + "}"
