"""Auto-matching of bank statement lines to ledger postings: pure rules over plain data.

The rules run in order, each on what the earlier ones left unmatched:

0. reversal_pair: a posting and the posting that reverses it (same account,
   opposite amounts) clear each other; the bank never saw either.
1. bank_reference: the line's bank reference or end-to-end id equals a
   reference the posting carries (its document, an entry metadata value such
   as `bank_reference`, or the entry's idempotency key). An ACH health-care
   payment (CCD+/CTX) carries its 835's reassociation trace as an X12 TRN
   segment in the addenda (`TRN*1*<TRN02>*<TRN03>\\`): that TRN02 counts as
   a line reference too, and equals the `bank_reference` of the remittance's
   bank posting.
2. invoice_number: an invoice number in the line's remittance text is one the
   posting carries (`invoice:<number>` documents, `invoice_number` metadata,
   or an invoice-like token of the entry memo).
3. amount_date_counterparty: same amount and currency, booked within
   `window_days` of the posting's date, and the bank's counterparty name
   agrees with the posting's customer or memo.

A rule proposes line/posting groups whose amounts agree in sum (one-to-one,
one-to-many, many-to-one); a proposal is kept only when no other proposal of
that rule touches any of its lines or postings, so only unambiguous
candidates are matched. Nothing here reads a database or a clock.
"""

from __future__ import annotations

import bisect
import functools
import operator
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from itertools import chain
from typing import Any

PostingKey = tuple[str, int]  # (entry_id, line_no)

RULES = ("reversal_pair", "bank_reference", "invoice_number", "amount_date_counterparty")
WINDOW_DAYS = 3
MIN_REFERENCE_LENGTH = 4

# Metadata keys whose values are references a bank could echo back.
REFERENCE_KEYS = (
    "bank_reference",
    "end_to_end_id",
    "reference",
    "payment_reference",
    "payment_id",
    "transaction_id",
    "remittance_reference",
)
INVOICE_KEYS = ("invoice_number", "invoice", "invoice_numbers", "invoices")
NAME_KEYS = ("customer_name", "counterparty", "counterparty_name", "payer", "payee", "name")
# Legal-form and filler words that do not tell two payers apart.
_NAME_NOISE = frozenset(
    ("gmbh", "ag", "kg", "ohg", "ug", "ltd", "limited", "inc", "incorporated", "llc", "llp",
     "corp", "corporation", "co", "company", "plc", "sa", "sas", "sarl", "srl", "spa", "bv",
     "nv", "oy", "ab", "as", "aps", "the", "and", "und", "et", "of")
)  # fmt: skip
_SPLIT = re.compile(r"[\s,;()\[\]{}<>\"'|]+")
_TRN = re.compile(r"TRN\*1\*([^*~\\\s]+)")  # X12 reassociation trace: TRN02
_INVOICE_LIKE = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9][A-Za-z0-9\-/_.#]{3,}$")
_NOT_ALNUM = re.compile(r"[^0-9A-Z]")


@dataclass(frozen=True, slots=True)
class BankLine:
    id: str
    booking_date: date
    amount: Decimal  # money in positive
    currency: str
    bank_reference: str | None = None
    end_to_end_id: str | None = None
    counterparty_name: str | None = None
    remittance_info: str | None = None
    value_date: date | None = None


@dataclass(frozen=True, slots=True)
class BookPosting:
    key: PostingKey
    effective_date: date
    amount: Decimal  # debit positive: money into a bank account is positive
    currency: str
    references: frozenset[str] = frozenset()  # normalized with reference_key()
    invoice_numbers: frozenset[str] = frozenset()  # normalized with invoice_key()
    names: tuple[str, ...] = ()  # customer id or name, compared both ways
    memo: str = ""  # a counterparty name found in it also counts
    entry_id: str = ""
    reverses: str | None = None  # entry id this posting's entry reverses


@dataclass(frozen=True, slots=True)
class Match:
    rule: str
    line_ids: tuple[str, ...]
    postings: tuple[PostingKey, ...]
    amount: Decimal
    currency: str


@dataclass
class MatchResult:
    matches: list[Match] = field(default_factory=list)
    unmatched_lines: list[str] = field(default_factory=list)
    unmatched_postings: list[PostingKey] = field(default_factory=list)

    def by_rule(self) -> dict[str, int]:
        counts = dict.fromkeys(RULES, 0)
        for match in self.matches:
            counts[match.rule] += 1
        return counts


# --- normalization --------------------------------------------------------------------


def reference_key(text: str | None) -> str | None:
    """References compare case-insensitively, ignoring surrounding space."""
    if text is None:
        return None
    key = text.strip().upper()
    return key if len(key) >= MIN_REFERENCE_LENGTH else None


def invoice_key(text: str) -> str:
    """INV-2026-000123, inv 2026/000123 and INV2026000123 are the same number."""
    return _NOT_ALNUM.sub("", text.upper())


@functools.lru_cache(maxsize=65536)
def name_tokens(text: str | None) -> frozenset[str]:
    if not text:
        return frozenset()
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return frozenset(t for t in re.split(r"[^a-z0-9]+", plain) if t and t not in _NAME_NOISE)


def invoice_tokens(text: str | None) -> set[str]:
    """Invoice-like tokens of free text (letters and digits), normalized."""
    found: set[str] = set()
    for token in _SPLIT.split(text or ""):
        token = token.strip(".:#")
        # Cheap rejections first: an invoice-like token has 4+ characters, a digit and
        # a letter (all letters or all digits cannot match).
        if len(token) < 4 or token.isalpha() or token.isdigit():
            continue
        if _INVOICE_LIKE.match(token):
            found.add(invoice_key(token))
            # "INV-1/INV-2" names two invoices
            found.update(invoice_key(p) for p in token.split("/") if _INVOICE_LIKE.match(p))
    return {k for k in found if len(k) >= MIN_REFERENCE_LENGTH}


@functools.lru_cache(maxsize=65536)
def _memo_invoices(memo: str) -> frozenset[str]:
    """Entry memos repeat (one per entry, often one wording per customer)."""
    return frozenset(invoice_tokens(memo))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def book_posting(
    *,
    entry_id: str,
    line_no: int,
    effective_date: date,
    amount: Decimal,
    currency: str,
    document: str | None = None,
    customer: str | None = None,
    memo: str = "",
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    reverses: str | None = None,
) -> BookPosting:
    """What a ledger posting offers the matcher, drawn from its entry."""
    references: set[str] = set()
    invoices: set[str] = set()
    generated = (idempotency_key or "").startswith("auto:")
    candidates = [document, None if generated else idempotency_key]
    if document and ":" in document:
        kind, _, value = document.partition(":")
        candidates.append(value)
        if kind.lower() == "invoice":
            invoices.add(invoice_key(value))
    names = [customer] if customer else []
    if metadata:  # most entries carry few of the keys: look up only those present
        for key in REFERENCE_KEYS:
            if key in metadata:
                candidates.extend(_strings(metadata[key]))
        for key in INVOICE_KEYS:
            if key in metadata:
                invoices.update(invoice_key(v) for v in _strings(metadata[key]))
        for key in NAME_KEYS:
            if key in metadata:
                names.extend(_strings(metadata[key]))
    for text in candidates:
        ref = reference_key(text)
        if ref is not None:
            references.add(ref)
    invoices.update(_memo_invoices(memo))
    return BookPosting(
        key=(entry_id, line_no),
        effective_date=effective_date,
        amount=amount,
        currency=currency,
        references=frozenset(references),
        invoice_numbers=frozenset(k for k in invoices if len(k) >= MIN_REFERENCE_LENGTH),
        names=tuple(names),
        memo=memo,
        entry_id=entry_id,
        reverses=reverses,
    )


def line_references(line: BankLine) -> set[str]:
    refs = set()
    # A reference the parser minted from the line's content means nothing to the book.
    if line.bank_reference and not line.bank_reference.startswith("sha256:"):
        refs.add(reference_key(line.bank_reference))
    refs.add(reference_key(line.end_to_end_id))
    for text in (line.remittance_info, line.bank_reference):
        if text and "TRN*1*" in text:  # most lines carry none: skip the regex
            refs.update(reference_key(trace) for trace in _TRN.findall(text))
    return {r for r in refs if r is not None}


# --- the rules ------------------------------------------------------------------------

Proposal = tuple[tuple[str, ...], tuple[PostingKey, ...]]
_ZERO = Decimal(0)
_KEY = operator.attrgetter("key")


class _State:
    def __init__(self, lines: Sequence[BankLine], postings: Sequence[BookPosting]) -> None:
        self.lines = {line.id: line for line in lines}
        self.postings = {p.key: p for p in postings}
        self.free_lines: dict[str, BankLine] = dict(self.lines)
        self.free_postings: dict[PostingKey, BookPosting] = dict(self.postings)
        self.matches: list[Match] = []

    def accept(self, rule: str, proposals: Iterable[Proposal]) -> None:
        unique = set(proposals)
        used = Counter(chain.from_iterable(x + k for x, k in unique))
        # A line or posting that two proposals want makes both ambiguous: keep neither.
        wanted = {item for item, n in used.items() if n > 1}
        kept = [p for p in unique if wanted.isdisjoint(p[0]) and wanted.isdisjoint(p[1])]
        for line_ids, keys in sorted(kept):
            if len(keys) == 1:  # most matches: one posting
                first = self.postings[keys[0]]
                currency, amount = first.currency, _ZERO + first.amount
            else:
                currency = (self.postings[keys[0]] if keys else self.lines[line_ids[0]]).currency
                amount = sum((self.postings[k].amount for k in keys), _ZERO)
            self.matches.append(Match(
                rule,
                line_ids if len(line_ids) < 2 else tuple(sorted(line_ids)),
                keys if len(keys) < 2 else tuple(sorted(keys)),
                amount,
                currency,
            ))  # fmt: skip
            for line_id in line_ids:
                del self.free_lines[line_id]
            for key in keys:
                del self.free_postings[key]


def _by_sum(line: BankLine, candidates: list[BookPosting]) -> tuple[PostingKey, ...] | None:
    """All candidates when they add up to the line; else the one of equal amount."""
    if not candidates:
        return None
    if sum((p.amount for p in candidates), _ZERO) == line.amount:
        return tuple(p.key for p in candidates)
    exact = [p for p in candidates if p.amount == line.amount]
    return (exact[0].key,) if len(exact) == 1 else None


def _reversal_pairs(state: _State) -> list[Proposal]:
    if all(p.reverses is None for p in state.free_postings.values()):
        return []
    by_entry: dict[str, list[BookPosting]] = defaultdict(list)
    for posting in state.free_postings.values():
        by_entry[posting.entry_id].append(posting)
    proposals: list[Proposal] = []
    for posting in state.free_postings.values():
        if posting.reverses is None:
            continue
        originals = [
            o
            for o in by_entry.get(posting.reverses, [])
            if o.amount == -posting.amount and o.currency == posting.currency
        ]
        if len(originals) == 1:
            proposals.append(((), tuple(sorted((originals[0].key, posting.key)))))
    return proposals


def _bank_reference(state: _State) -> list[Proposal]:
    index: dict[str, list[BookPosting]] = defaultdict(list)
    for posting in state.free_postings.values():
        for ref in posting.references:
            index[ref].append(posting)
    proposals: list[Proposal] = []
    claims: dict[PostingKey, list[BankLine]] = defaultdict(list)
    for line in state.free_lines.values():
        seen: dict[PostingKey, BookPosting] = {}
        for ref in line_references(line):
            for posting in index.get(ref, ()):
                if posting.currency == line.currency:
                    seen[posting.key] = posting
        if not seen:
            continue
        if len(seen) == 1:  # most lines: _by_sum of one candidate, without sorting
            (posting,) = seen.values()
            claims[posting.key].append(line)
            if _ZERO + posting.amount == line.amount:
                proposals.append(((line.id,), (posting.key,)))
            continue
        keys = _by_sum(line, sorted(seen.values(), key=_KEY))
        if keys is not None:
            proposals.append(((line.id,), keys))
    # Many-to-one: the bank split one booked payment over several lines.
    for key, lines in claims.items():
        if len(lines) > 1 and sum((x.amount for x in lines), Decimal(0)) == (
            state.postings[key].amount
        ):
            proposals.append((tuple(sorted(x.id for x in lines)), (key,)))
    return proposals


def _invoice_number(state: _State) -> list[Proposal]:
    index: dict[str, list[BookPosting]] = defaultdict(list)
    for posting in state.free_postings.values():
        for number in posting.invoice_numbers:
            index[number].append(posting)
    proposals: list[Proposal] = []
    for line in state.free_lines.values():
        seen: dict[PostingKey, BookPosting] = {}
        for number in invoice_tokens(line.remittance_info):
            for posting in index.get(number, ()):
                if posting.currency == line.currency:
                    seen[posting.key] = posting
        if not seen:
            continue
        if len(seen) == 1:  # _by_sum of one candidate
            (posting,) = seen.values()
            if _ZERO + posting.amount == line.amount:
                proposals.append(((line.id,), (posting.key,)))
            continue
        keys = _by_sum(line, sorted(seen.values(), key=_KEY))
        if keys is not None:
            proposals.append(((line.id,), keys))
    return proposals


def names_agree(counterparty: str | None, posting: BookPosting) -> bool:
    wanted = name_tokens(counterparty)
    if not wanted:
        return False
    for name in posting.names:
        tokens = name_tokens(name)
        if tokens and (wanted <= tokens or tokens <= wanted):
            return True
    return wanted <= name_tokens(posting.memo)


def _amount_date_counterparty(state: _State, window_days: int) -> list[Proposal]:
    buckets: dict[tuple[str, Decimal], list[tuple[date, PostingKey]]] = defaultdict(list)
    for posting in state.free_postings.values():
        buckets[(posting.currency, posting.amount)].append((posting.effective_date, posting.key))
    for bucket in buckets.values():
        bucket.sort()
    window = timedelta(days=window_days)
    proposals: list[Proposal] = []
    for line in state.free_lines.values():
        found = buckets.get((line.currency, line.amount))
        if not found or not line.counterparty_name:
            continue
        bucket = found
        days = [line.booking_date] + ([line.value_date] if line.value_date else [])
        low, high = min(days) - window, max(days) + window
        start = bisect.bisect_left(bucket, (low, ("", -1)))
        candidates = []
        for day, key in bucket[start:]:
            if day > high:
                break
            if names_agree(line.counterparty_name, state.postings[key]):
                candidates.append(key)
        if len(candidates) == 1:
            proposals.append(((line.id,), (candidates[0],)))
    return proposals


def auto_match(
    lines: Sequence[BankLine],
    postings: Sequence[BookPosting],
    *,
    window_days: int = WINDOW_DAYS,
) -> MatchResult:
    """Match what the rules find unambiguous; report what is left on each side."""
    state = _State(lines, postings)
    state.accept("reversal_pair", _reversal_pairs(state))
    state.accept("bank_reference", _bank_reference(state))
    state.accept("invoice_number", _invoice_number(state))
    state.accept("amount_date_counterparty", _amount_date_counterparty(state, window_days))
    return MatchResult(
        matches=state.matches,
        unmatched_lines=sorted(state.free_lines),
        unmatched_postings=sorted(state.free_postings),
    )


@dataclass(frozen=True, slots=True)
class Candidate:
    rule: str  # an auto-match rule, or "amount" for a same-amount posting nearby
    postings: tuple[PostingKey, ...]
    amount: Decimal
    lines: tuple[str, ...] = ()  # every line of the proposal (several: a split payment)


def candidates(
    lines: Sequence[BankLine],
    postings: Sequence[BookPosting],
    *,
    window_days: int = WINDOW_DAYS,
    nearby_days: int = 60,
) -> dict[str, list[Candidate]]:
    """Per line, what a person may accept: every proposal of the auto-match
    rules, ambiguous ones included (auto-match keeps only unambiguous ones),
    strongest rule first; then postings of the same amount and currency
    within `nearby_days` that no rule proposed."""
    state = _State(lines, postings)
    proposals = [
        ("bank_reference", _bank_reference(state)),
        ("invoice_number", _invoice_number(state)),
    ]
    out: dict[str, list[Candidate]] = defaultdict(list)
    seen: dict[str, set[tuple[PostingKey, ...]]] = defaultdict(set)

    def add(
        line_id: str, rule: str, keys: tuple[PostingKey, ...], lines: tuple[str, ...] = ()
    ) -> None:
        keys = tuple(sorted(keys))
        if keys in seen[line_id]:
            return
        seen[line_id].add(keys)
        amount = sum((state.postings[k].amount for k in keys), Decimal(0))
        out[line_id].append(Candidate(rule, keys, amount, lines or (line_id,)))

    for rule, found in proposals:
        for line_ids, keys in sorted(found):
            for line_id in line_ids:  # a split payment is offered on each of its lines
                add(line_id, rule, keys, line_ids)
    window, nearby = timedelta(days=window_days), timedelta(days=nearby_days)
    for line in lines:
        days = [line.booking_date] + ([line.value_date] if line.value_date else [])
        same = sorted(
            (p for p in postings if p.currency == line.currency and p.amount == line.amount),
            key=lambda p: (abs((p.effective_date - line.booking_date).days), p.key),
        )
        for p in same:  # the amount_date_counterparty rule's test, without its uniqueness
            close = min(days) - window <= p.effective_date <= max(days) + window
            if close and names_agree(line.counterparty_name, p):
                add(line.id, "amount_date_counterparty", (p.key,))
        for p in same:
            if abs(p.effective_date - line.booking_date) <= nearby:
                add(line.id, "amount", (p.key,))
    return dict(out)
