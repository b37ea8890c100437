"""check_decoded: the cheap pass over an already decoded body finds what
check_json finds, and names the field the same way."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from adapters.input_limits import (
    MAX_DEPTH,
    MAX_METADATA_BYTES,
    MetadataTooLarge,
    NulCharacter,
    TooDeeplyNested,
    check_decoded,
    nesting_levels_within,
)


def _check(document: Any) -> None:
    check_decoded(document, msgspec.json.encode(document), "body")


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"a": [value]} if isinstance(value, str) else {"a": value}
    return value


def test_a_large_flat_batch_passes() -> None:
    batch = [{"id": f"e{n}", "properties": {"region": "eu", "tags": ["a"]}} for n in range(20_000)]
    _check(batch)


def test_nesting_at_the_limit_passes_and_beyond_it_is_named() -> None:
    _check(_nested(MAX_DEPTH - 1))
    with pytest.raises(TooDeeplyNested) as caught:
        _check([_nested(MAX_DEPTH)])
    assert caught.value.fields["field"].startswith("body[0].a")


def test_oversized_metadata_deep_in_a_large_body_is_named() -> None:
    batch: list[Any] = [{"id": f"e{n}", "metadata": {"k": "v"}} for n in range(2_000)]
    batch[1_500]["metadata"] = {"note": "x" * MAX_METADATA_BYTES}
    with pytest.raises(MetadataTooLarge) as caught:
        _check(batch)
    assert caught.value.fields["field"] == "body[1500].metadata"


def test_a_nul_in_a_large_body_is_named() -> None:
    batch: list[Any] = [{"id": f"e{n}"} for n in range(2_000)]
    batch[7]["id"] = "bad\x00id"
    with pytest.raises(NulCharacter) as caught:
        _check(batch)
    assert caught.value.fields["field"] == "body[7].id"


def test_scalars_pass() -> None:
    _check("text")
    _check(12)


def _levels(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_levels(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_levels(v) for v in value), default=0)
    return 0


_TRICKY = ['a"b', "\\", '\\"', "{[", "]}", '"}"', "\\\\\\", "x\\u0041", '\\"[', "]\\"]


def _random_document(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth == 0 or roll < 0.3:
        return rng.choice([*_TRICKY, 1, None, True, "plain"])
    if roll < 0.65:
        return [_random_document(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {
        rng.choice(_TRICKY) + str(i): _random_document(rng, depth - 1)
        for i in range(rng.randint(0, 3))
    }


def test_nesting_measured_on_bytes_matches_the_decoded_document() -> None:
    rng = random.Random(14)
    for _ in range(2_000):
        document = _random_document(rng, rng.randint(0, 8))
        raw = msgspec.json.encode(document)
        levels = _levels(document)
        assert nesting_levels_within(raw, levels), raw
        if levels:
            assert not nesting_levels_within(raw, levels - 1), raw
