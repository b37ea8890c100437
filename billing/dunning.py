"""Dunning: what happens to an unpaid invoice as the book's clock passes its due
date, as pure rules over plain data (the book setting `dunning`).

Day 0 is the invoice's due date D. The policy names days relative to it:

- **Card retries** (`retry_days`, default 3, 5, 7): for an invoice whose card
  charge failed, a retry that many days after the *first* failure
  (billing.collection.next_retry). A run that catches up past several retry
  days retries once.
- **Reminders** (`reminder_days_before_due`, default 3; `reminder_days_after_due`,
  default 1, 7, 14): a message on D − n and D + n, never dated before the
  invoice was issued. Each is queued at most once per invoice. When a run
  finds several reminders due at once, only the latest is queued and the
  earlier ones are recorded as skipped: a customer never gets a burst of
  stale reminders.
- **Past due** on D + `past_due_after_days` (default 1): the subscription the
  invoice bills reads `past_due`.
- **Late fee** (`late_fee`: `{"fixed": "15.00"}` or `{"percent": "1.5"}`; off
  when absent) on the day the invoice becomes past due, once per invoice:
  the fixed amount, or the percentage of the amount still due that day,
  rounded half-up to the currency's minor unit. Never charged on a late-fee
  invoice itself.
- **Suspension** on D + `suspend_after_days` (off when absent) for an invoice
  that bills a subscription.
- **Write-off** on D + `write_off_after_days` (off when absent), through the
  write-off path; a due write-off makes the reminders due in the same run
  moot (skipped).

A step is due on `as_of` when its day is ≤ `as_of` and it is not done yet;
every step is done at most once per (invoice, step key). An invoice with
nothing left to pay has no steps. `next_action` is the earliest step not yet
done, of the kinds the API shows (retry, reminder, suspend, write_off).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from billing.collection import DEFAULT_RETRY_DAYS, next_retry
from ledger.money import Money, Rounding

__all__ = [
    "DEFAULT_REMINDERS_AFTER",
    "DEFAULT_REMINDERS_BEFORE",
    "InvoiceFacts",
    "Plan",
    "Policy",
    "Step",
    "late_fee_amount",
    "next_action",
    "plan",
    "policy_of",
    "schedule",
]

DEFAULT_REMINDERS_BEFORE = (3,)
DEFAULT_REMINDERS_AFTER = (1, 7, 14)
SHOWN = ("retry", "reminder", "suspend", "write_off")  # next_action types (API.md)


@dataclass(frozen=True, slots=True)
class Policy:
    retry_days: tuple[int, ...] = DEFAULT_RETRY_DAYS
    reminders: tuple[int, ...] = (-3, 1, 7, 14)  # signed offsets from the due date
    late_fee_fixed: Decimal | None = None
    late_fee_percent: Decimal | None = None
    past_due_after_days: int = 1
    suspend_after_days: int | None = None
    write_off_after_days: int | None = None


def policy_of(settings: Mapping[str, Any]) -> Policy:
    """The policy of a book's (already validated) settings; absent keys take defaults."""
    raw = settings.get("dunning")
    d: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    raw_fee = d.get("late_fee")
    fee: Mapping[str, Any] = raw_fee if isinstance(raw_fee, Mapping) else {}
    before = d.get("reminder_days_before_due", DEFAULT_REMINDERS_BEFORE)
    after = d.get("reminder_days_after_due", DEFAULT_REMINDERS_AFTER)
    return Policy(
        retry_days=tuple(d.get("retry_days") or DEFAULT_RETRY_DAYS),
        reminders=tuple(sorted({-int(n) for n in before} | {int(n) for n in after})),
        late_fee_fixed=Decimal(fee["fixed"]) if "fixed" in fee else None,
        late_fee_percent=Decimal(fee["percent"]) if "percent" in fee else None,
        past_due_after_days=int(d.get("past_due_after_days", 1)),
        suspend_after_days=d.get("suspend_after_days"),
        write_off_after_days=d.get("write_off_after_days"),
    )


@dataclass(frozen=True, slots=True)
class InvoiceFacts:
    issue_date: date
    due_date: date
    amount_due: Decimal
    has_subscription: bool = False
    is_late_fee: bool = False
    attempts: tuple[tuple[date, str], ...] = ()  # (day, outcome), oldest first


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # reminder, past_due, late_fee, suspend, write_off
    key: str  # unique per invoice, e.g. "reminder:-3"
    on: date


@dataclass(frozen=True, slots=True)
class Plan:
    retry: bool  # retry the card now (before any other step)
    steps: list[Step] = field(default_factory=list)  # to do, in this order
    skipped: list[Step] = field(default_factory=list)  # recorded as done, not acted on


def schedule(facts: InvoiceFacts, policy: Policy) -> list[Step]:
    """Every dated step of an invoice (retries aside), by day."""
    due = facts.due_date
    steps = [
        Step("reminder", f"reminder:{n:+d}", due + timedelta(days=n))
        for n in policy.reminders
        if due + timedelta(days=n) >= facts.issue_date
    ]
    past_due = due + timedelta(days=policy.past_due_after_days)
    if facts.has_subscription:
        steps.append(Step("past_due", "past_due", past_due))
    if not facts.is_late_fee and (policy.late_fee_fixed or policy.late_fee_percent):
        steps.append(Step("late_fee", "late_fee", past_due))
    if facts.has_subscription and policy.suspend_after_days is not None:
        steps.append(Step("suspend", "suspend", due + timedelta(days=policy.suspend_after_days)))
    if policy.write_off_after_days is not None:
        steps.append(
            Step("write_off", "write_off", due + timedelta(days=policy.write_off_after_days))
        )
    order = {"past_due": 0, "late_fee": 1, "suspend": 2, "reminder": 3, "write_off": 4}
    return sorted(steps, key=lambda s: (s.on, order[s.kind]))


def _retry_on(facts: InvoiceFacts, policy: Policy) -> date | None:
    return next_retry(list(facts.attempts), policy.retry_days) if facts.attempts else None


def plan(facts: InvoiceFacts, policy: Policy, done: Collection[str], as_of: date) -> Plan:
    """What a dunning run on `as_of` does to this invoice (module docstring)."""
    if facts.amount_due <= 0:
        return Plan(False)
    retry_on = _retry_on(facts, policy)
    due = [s for s in schedule(facts, policy) if s.on <= as_of and s.key not in done]
    reminders = [s for s in due if s.kind == "reminder"]
    writes_off = any(s.kind == "write_off" for s in due)
    keep = None if writes_off or not reminders else reminders[-1]
    skipped = [s for s in reminders if s is not keep]
    steps = [s for s in due if s.kind != "reminder" or s is keep]
    return Plan(retry_on is not None and retry_on <= as_of, steps, skipped)


def next_action(
    facts: InvoiceFacts, policy: Policy, done: Collection[str]
) -> tuple[str, date] | None:
    """The earliest step not yet done (retry, reminder, suspend or write_off)."""
    if facts.amount_due <= 0:
        return None
    found: list[tuple[date, str]] = [
        (s.on, s.kind) for s in schedule(facts, policy) if s.kind in SHOWN and s.key not in done
    ]
    retry_on = _retry_on(facts, policy)
    if retry_on is not None:
        found.append((retry_on, "retry"))
    if not found:
        return None
    on, kind = min(found, key=lambda f: (f[0], SHOWN.index(f[1])))
    return kind, on


def late_fee_amount(policy: Policy, still_due: Money) -> Money:
    """The fixed fee, or the percentage of what is still due, half-up to the minor unit."""
    if policy.late_fee_fixed is not None:
        return Money(policy.late_fee_fixed, still_due.currency).round_to_minor(Rounding.HALF_UP)
    percent = policy.late_fee_percent or Decimal(0)
    return Money(still_due.amount * percent / 100, still_due.currency).round_to_minor(
        Rounding.HALF_UP
    )
