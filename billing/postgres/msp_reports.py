"""Services (MSP) reports: unbilled WIP by client and age, retainer burn-down,
profitability per client at each person's cost rate; and the people (their
cost rates) the last one needs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

import psycopg

from billing.errors import InvalidBillingRequest
from billing.msp import AGE_BUCKETS, age_bucket, contract_position, minutes_value, ratio
from ledger.money import check_currency

# --- people ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    currency: str
    cost_rate: Decimal
    role: str | None


def set_person(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    name: str,
    cost_rate: str,
    currency: str,
    role: str | None = None,
) -> Person:
    """A person's hourly cost rate (a later call replaces it): `name` as time
    entries carry it."""
    if not name.strip():
        raise InvalidBillingRequest("name must not be empty", field="name")
    try:
        rate = Decimal(str(cost_rate))
    except InvalidOperation:
        rate = Decimal(-1)
    if isinstance(cost_rate, bool) or not rate.is_finite() or rate < 0:
        raise InvalidBillingRequest(
            "cost_rate must be a non-negative decimal string", field="cost_rate"
        )
    person = Person(name.strip(), check_currency(currency), rate, role)
    conn.execute(
        "insert into people (book_id, name, currency, cost_rate, role) values (%s, %s, %s, %s, %s)"
        " on conflict (book_id, name) do update set currency = excluded.currency,"
        " cost_rate = excluded.cost_rate, role = excluded.role",
        (book_id, person.name, person.currency, person.cost_rate, role),
    )
    return person


def list_people(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Person]:
    rows = conn.execute(
        "select name, currency, cost_rate, role from people where book_id = %s order by name",
        (book_id,),
    ).fetchall()
    return [Person(r[0], r[1], Decimal(r[2]), r[3]) for r in rows]


# --- unbilled WIP by age ------------------------------------------------------------

# Billable work done through as_of and not invoiced by then (no invoice yet, or one
# issued after as_of), with what it will bill: T&M time at its amount, retainer
# overage at the overage rate (minutes priced below), expenses at their billable
# amount, completed milestones at their amount.
_WIP = """
select t.customer_id, c.currency, t.date, 'time' as source,
       case when c.type = 'retainer' then 0 else t.amount end as amount,
       case when c.type = 'retainer' then t.overage_minutes else 0 end as overage_minutes,
       c.terms->>'overage_rate' as overage_rate
  from time_entries t
  join contracts c on c.book_id = t.book_id and c.id = t.contract_id
  left join invoices i on i.book_id = t.book_id and i.id = t.invoice_id
 where t.book_id = %(book)s and t.status <> 'draft' and t.billable = 'billable'
   and t.date <= %(as_of)s and (i.id is null or i.issue_date > %(as_of)s)
   and c.type in ('time_and_materials', 'retainer')
union all
select e.customer_id, e.currency, e.date, 'expense', e.billable_amount, 0, null
  from expenses e
  left join invoices i on i.book_id = e.book_id and i.id = e.invoice_id
 where e.book_id = %(book)s and e.status <> 'draft' and e.billable
   and e.date <= %(as_of)s and (i.id is null or i.issue_date > %(as_of)s)
union all
select c.customer_id, c.currency, m.completed_on, 'milestone', round(m.amount, 2), 0, null
  from contract_milestones m
  join contracts c on c.book_id = m.book_id and c.id = m.contract_id
  left join invoices i on i.book_id = m.book_id and i.id = m.invoice_id
 where m.book_id = %(book)s and m.completed_on <= %(as_of)s
   and (i.id is null or i.issue_date > %(as_of)s)
"""

# Percent-complete contracts: earned − billed at their last event through as_of.
_PROGRESS = """
select distinct on (p.contract_id) c.customer_id, c.currency, p.earned, p.billed,
       (select max(q.date) from contract_progress q where q.book_id = p.book_id
         and q.contract_id = p.contract_id and q.kind <> 'billed' and q.date <= %(as_of)s)
  from contract_progress p join contracts c on c.book_id = p.book_id and c.id = p.contract_id
 where p.book_id = %(book)s and p.date <= %(as_of)s
 order by p.contract_id, p.seq desc
"""


@dataclass(slots=True)
class WipAge:
    customer_id: uuid.UUID
    currency: str
    buckets: dict[str, Decimal] = field(
        default_factory=lambda: {b: Decimal(0) for b in AGE_BUCKETS}
    )

    @property
    def total(self) -> Decimal:
        return sum(self.buckets.values(), Decimal(0))


def wip_by_age(conn: psycopg.Connection, book_id: uuid.UUID, as_of: date) -> list[WipAge]:
    """Unbilled WIP per client in age buckets (0–30, 31–60, 61–90, 90+ days from
    the entry date to `as_of`)."""
    found: dict[tuple[uuid.UUID, str], WipAge] = {}

    def add(customer: uuid.UUID, currency: str, day: date, amount: Decimal) -> None:
        if not amount:
            return
        row = found.setdefault((customer, currency), WipAge(customer, currency))
        row.buckets[age_bucket((as_of - day).days)] += amount

    params = {"book": book_id, "as_of": as_of}
    for customer, currency, day, _, amount, overage, overage_rate in conn.execute(_WIP, params):
        value = Decimal(amount)
        if overage and overage_rate is not None:
            priced = minutes_value(abs(overage), Decimal(overage_rate), currency).amount
            value += priced if overage > 0 else -priced
        add(customer, currency, day, value)
    for customer, currency, earned, billed, day in conn.execute(_PROGRESS, params):
        if day is not None:
            add(customer, currency, day, contract_position(Decimal(earned), Decimal(billed))[0])
    return sorted(found.values(), key=lambda w: (str(w.customer_id), w.currency))


# --- retainer burn-down ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BurnDown:
    contract_id: uuid.UUID
    customer_id: uuid.UUID
    period_start: date
    period_end: date
    included_minutes: int
    carried_in_minutes: int
    drawn_minutes: int
    overage_minutes: int
    carried_out_minutes: int
    expired_minutes: int
    closed: bool

    @property
    def used_minutes(self) -> int:
        return self.drawn_minutes + self.overage_minutes

    @property
    def remaining_minutes(self) -> int:
        return self.included_minutes + self.carried_in_minutes - self.drawn_minutes


_BURN = """
select c.id, c.customer_id, p.period_start, p.period_end, c.terms->>'included_hours',
       p.carried_in_minutes, p.drawn_minutes, p.carried_out_minutes, p.expired_minutes, p.closed,
       coalesce((select sum(t.overage_minutes) from time_entries t
                  left join time_entries o on o.book_id = t.book_id and o.id = t.adjusts
                 where t.book_id = c.book_id and t.contract_id = c.id and t.status <> 'draft'
                   and coalesce(o.date, t.date) >= p.period_start
                   and coalesce(o.date, t.date) < p.period_end), 0)
  from contracts c join contract_periods p on p.book_id = c.book_id and p.contract_id = c.id
 where c.book_id = %s and c.type = 'retainer' and (%s::uuid is null or c.id = %s)
 order by c.customer_id, c.created_at, c.id, p.period_start
"""


def retainer_burn_down(
    conn: psycopg.Connection, book_id: uuid.UUID, contract_id: uuid.UUID | None = None
) -> list[BurnDown]:
    """Per retainer per period: included, carried in, used (drawn + overage),
    remaining, carried out and expired hours."""
    return [
        BurnDown(
            r[0],
            r[1],
            r[2],
            r[3],
            int(Decimal(r[4]) * 60),
            r[5],
            r[6],
            int(r[10]),
            r[7],
            r[8],
            r[9],
        )
        for r in conn.execute(_BURN, (book_id, contract_id, contract_id)).fetchall()
    ]


# --- profitability ----------------------------------------------------------------------


@dataclass(slots=True)
class Profitability:
    customer_id: uuid.UUID
    currency: str
    revenue: Decimal = Decimal(0)
    labor_cost: Decimal = Decimal(0)
    expense_cost: Decimal = Decimal(0)
    unpriced_minutes: int = 0  # time by people without a cost rate (counted at 0)

    @property
    def cost(self) -> Decimal:
        return self.labor_cost + self.expense_cost

    @property
    def margin(self) -> Decimal:
        return self.revenue - self.cost

    @property
    def margin_ratio(self) -> Decimal | None:
        return ratio(self.margin, self.revenue)


_REVENUE = """
select p.customer_id, p.currency, -sum(p.amount)
  from postings p join accounts a on a.book_id = p.book_id and a.id = p.account_id
 where p.book_id = %s and a.name in ('Income:Services', 'Income:Breakage')
   and p.customer_id is not null and p.effective_date >= %s and p.effective_date < %s
 group by p.customer_id, p.currency
"""

_LABOR = """
select t.customer_id, c.currency, t.person, t.minutes, pe.cost_rate
  from time_entries t join contracts c on c.book_id = t.book_id and c.id = t.contract_id
  left join people pe on pe.book_id = t.book_id and pe.name = t.person
   and pe.currency = c.currency
 where t.book_id = %s and t.status <> 'draft' and t.date >= %s and t.date < %s
"""

_EXPENSES = """
select customer_id, currency, sum(cost) from expenses
 where book_id = %s and status <> 'draft' and date >= %s and date < %s
 group by customer_id, currency
"""


def profitability(
    conn: psycopg.Connection, book_id: uuid.UUID, start: date, end: date
) -> list[Profitability]:
    """Per client over `[start, end)`: revenue (Income:Services and Income:Breakage
    postings naming the client — the ledger's figure), less the cost of the time
    worked (raw minutes, approved or invoiced, billable or not, at each person's
    cost rate, rounded per entry) and of the expenses (at cost)."""
    if end <= start:
        raise InvalidBillingRequest("to must be after from", field="to")
    found: dict[tuple[str, str], Profitability] = {}

    def row(customer: object, currency: str) -> Profitability:
        # postings name the customer as text, the time sub-ledger as a uuid
        key = (str(customer), currency)
        if key not in found:
            found[key] = Profitability(uuid.UUID(key[0]), currency)
        return found[key]

    for customer, currency, amount in conn.execute(_REVENUE, (book_id, start, end)):
        row(customer, currency).revenue += Decimal(amount)
    for customer, currency, _, minutes, cost_rate in conn.execute(_LABOR, (book_id, start, end)):
        target = row(customer, currency)
        if cost_rate is None:
            target.unpriced_minutes += minutes
            continue
        value = minutes_value(abs(minutes), Decimal(cost_rate), currency).amount
        target.labor_cost += value if minutes >= 0 else -value
    for customer, currency, cost in conn.execute(_EXPENSES, (book_id, start, end)):
        row(customer, currency).expense_cost += Decimal(cost)
    return sorted(found.values(), key=lambda p: (str(p.customer_id), p.currency))
