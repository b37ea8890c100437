"""billing/dunning.py's schedule as worked examples: an invoice issued Feb 2,
due Mar 4 (net 30), under the default policy (retries 3/5/7 days after the
first failure; reminders 3 days before and 1, 7 and 14 days after the due
date; past due the day after)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from billing.dunning import (
    InvoiceFacts,
    Policy,
    late_fee_amount,
    next_action,
    plan,
    policy_of,
    schedule,
)
from ledger.money import Money

ISSUED, DUE = date(2026, 2, 2), date(2026, 3, 4)
FACTS = InvoiceFacts(ISSUED, DUE, Decimal("108.00"))
DEFAULT = Policy()


def test_default_schedule_reminds_3_days_before_and_1_7_14_after() -> None:
    assert [(s.key, s.on) for s in schedule(FACTS, DEFAULT)] == [
        ("reminder:-3", date(2026, 3, 1)),
        ("reminder:+1", date(2026, 3, 5)),
        ("reminder:+7", date(2026, 3, 11)),
        ("reminder:+14", date(2026, 3, 18)),
    ]


def test_a_subscription_invoice_goes_past_due_then_suspended_then_written_off() -> None:
    policy = Policy(reminders=(), suspend_after_days=10, write_off_after_days=30)
    facts = InvoiceFacts(ISSUED, DUE, Decimal("30.00"), has_subscription=True)
    assert [(s.kind, s.on) for s in schedule(facts, policy)] == [
        ("past_due", date(2026, 3, 5)),
        ("suspend", date(2026, 3, 14)),
        ("write_off", date(2026, 4, 3)),
    ]


def test_a_run_catching_up_queues_only_the_latest_reminder() -> None:
    done = {"reminder:-3"}
    todo = plan(FACTS, DEFAULT, done, date(2026, 3, 12))
    assert [s.key for s in todo.steps] == ["reminder:+7"]
    assert [s.key for s in todo.skipped] == ["reminder:+1"]


def test_a_step_done_is_never_planned_again() -> None:
    done = {"reminder:-3", "reminder:+1"}
    assert plan(FACTS, DEFAULT, done, date(2026, 3, 5)).steps == []


def test_a_due_write_off_makes_the_reminders_of_the_same_run_moot() -> None:
    policy = Policy(write_off_after_days=14)
    todo = plan(FACTS, policy, {"reminder:-3"}, date(2026, 3, 18))
    assert [s.key for s in todo.steps] == ["write_off"]
    assert {s.key for s in todo.skipped} == {"reminder:+1", "reminder:+7", "reminder:+14"}


def test_retries_3_5_7_days_after_the_first_failure_and_once_when_catching_up() -> None:
    failed = InvoiceFacts(ISSUED, DUE, Decimal("108.00"), attempts=((ISSUED, "failed"),))
    assert not plan(failed, DEFAULT, set(), date(2026, 2, 4)).retry
    assert plan(failed, DEFAULT, set(), date(2026, 2, 5)).retry
    assert next_action(failed, DEFAULT, set()) == ("retry", date(2026, 2, 5))
    twice = InvoiceFacts(
        ISSUED, DUE, Decimal("108.00"), attempts=((ISSUED, "failed"), (date(2026, 2, 20), "failed"))
    )  # a late retry on day 18 used every retry day: the reminders come next
    assert not plan(twice, DEFAULT, set(), date(2026, 2, 21)).retry
    assert next_action(twice, DEFAULT, set()) == ("reminder", date(2026, 3, 1))


def test_nothing_due_means_no_step_and_no_next_action() -> None:
    paid = InvoiceFacts(ISSUED, DUE, Decimal(0))
    assert plan(paid, DEFAULT, set(), date(2026, 4, 30)).steps == []
    assert next_action(paid, DEFAULT, set()) is None


def test_reminders_before_the_issue_date_are_not_scheduled() -> None:
    on_receipt = InvoiceFacts(DUE, DUE, Decimal("10.00"))
    assert [s.key for s in schedule(on_receipt, DEFAULT)] == [
        "reminder:+1",
        "reminder:+7",
        "reminder:+14",
    ]


def test_late_fee_fixed_or_percent_half_up_and_never_on_a_late_fee() -> None:
    fixed = policy_of({"dunning": {"late_fee": {"fixed": "15"}}})
    percent = policy_of({"dunning": {"late_fee": {"percent": "1.5"}}})
    assert late_fee_amount(fixed, Money.of("108.00", "USD")) == Money.of("15.00", "USD")
    # 1.5 % of 108.00 = 1.62; of 103.00 = 1.545 → 1.55 (half-up)
    assert late_fee_amount(percent, Money.of("108.00", "USD")) == Money.of("1.62", "USD")
    assert late_fee_amount(percent, Money.of("103.00", "USD")) == Money.of("1.55", "USD")
    assert [s.on for s in schedule(FACTS, percent) if s.kind == "late_fee"] == [date(2026, 3, 5)]
    fee_invoice = InvoiceFacts(DUE, DUE, Decimal("1.62"), is_late_fee=True)
    assert [s for s in schedule(fee_invoice, percent) if s.kind == "late_fee"] == []


def test_policy_of_the_book_setting() -> None:
    policy = policy_of(
        {
            "dunning": {
                "retry_days": [2, 4],
                "reminder_days_before_due": [5],
                "reminder_days_after_due": [2],
                "past_due_after_days": 3,
                "suspend_after_days": 10,
                "write_off_after_days": 60,
            }
        }
    )
    assert policy == Policy((2, 4), (-5, 2), None, None, 3, 10, 60)
    assert policy_of({}) == DEFAULT
