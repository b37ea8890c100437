"""`ab_canonical_json`: the seal chain's canonical JSON computed in SQL, so
`verify` re-hashes the chain set-based instead of building Python objects per
posting.

It writes a jsonb value exactly as `json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)` writes what psycopg loads from it
(`ledger/sealing.py`): keys in code-point order (collation "C" on UTF-8),
strings escaped as `to_json` does (the same escapes as Python's encoder).
A number that Python would load as a float (it has a fraction) has no exact
SQL rendering of Python's `repr`, so the function answers NULL for any value
containing one and `verify` hashes that entry in Python instead.

Revision ID: 0026
Revises: 0025
Create Date: 2026-11-30 17:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CANONICAL_JSON = r"""
create function ab_canonical_json(v jsonb) returns text
language plpgsql immutable strict parallel safe as $$
declare
  kind text := jsonb_typeof(v);
  result text;
begin
  if kind = 'object' then
    if v = '{}'::jsonb then
      return '{}';
    end if;
    -- any member without a rendering makes the whole value NULL (string_agg
    -- would silently skip it)
    select case when count(*) = count(m.piece)
                then '{' || string_agg(m.piece, ',' order by m.k collate "C") || '}' end
      into result
      from (select o.k, to_json(o.k)::text || ':' || ab_canonical_json(o.x) as piece
              from jsonb_each(v) as o(k, x)) m;
    return result;
  elsif kind = 'array' then
    if v = '[]'::jsonb then
      return '[]';
    end if;
    select case when count(*) = count(m.piece)
                then '[' || string_agg(m.piece, ',' order by m.n) || ']' end
      into result
      from (select a.n, ab_canonical_json(a.x) as piece
              from jsonb_array_elements(v) with ordinality as a(x, n)) m;
    return result;
  elsif kind = 'string' then
    return to_json(v #>> '{}')::text;
  elsif kind = 'number' then
    result := v::text;
    return case when result ~ '^-?[0-9]+$' then result end;
  else
    return v::text;  -- true, false, null
  end if;
end
$$
"""


def upgrade() -> None:
    op.execute(CANONICAL_JSON)


def downgrade() -> None:
    op.execute("drop function ab_canonical_json(jsonb)")
