"""SQL twins of the journal feed's text helpers, so a page's lines are written in PostgreSQL.

- `ab_fold(text)`: Python's `" ".join(s.split())` (runs of Unicode whitespace, as
  str.split() knows it, to one space; trimmed; null as '').
- `ab_csv(text)`: a cell as Python's csv.writer writes it with CRLF line ends
  (quoted when it holds a comma, a quote, CR or LF; quotes doubled; null as '').
- `ab_pyjson(jsonb)`: `json.dumps(json.loads(value::text), sort_keys=True,
  separators=(",", ":"), ensure_ascii=False)`: keys in code point order (C collation on
  UTF-8), numbers with a dot read as Python floats and written as repr() writes them
  (`ab_pyfloat`), the rest as jsonb writes it (the same escapes as json.dumps).

tests/integration/test_feed_sql.py ties them to the Python layouts byte for byte.

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-01 02:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0041"
down_revision: str | None = "0040"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# str.isspace() characters (sys.maxunicode checked): what str.split() splits on.
_SPACE = r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

UPGRADE = (
    r"""
create or replace function ab_fold(value text) returns text
language sql immutable parallel safe as $$
  select btrim(regexp_replace(coalesce(value, ''), '["""
    + _SPACE
    + r"""]+', ' ', 'g'), ' ')
$$;

create or replace function ab_csv(value text) returns text
language sql immutable parallel safe as $$
  select case when value ~ '[,"\r\n]' then '"' || replace(value, '"', '""') || '"'
              else coalesce(value, '') end
$$;

-- repr(float(value)): PostgreSQL's float8 output (extra_float_digits 1) and Python's
-- repr are both the shortest text that reads back as the same double; only the
-- layout differs (Python: exponent when the point is 4+ places left or 16+ right).
create or replace function ab_pyfloat(value text) returns text
language plpgsql immutable strict parallel safe set extra_float_digits = 1 as $$
declare
  r text := value::float8::text;
  neg boolean := left(r, 1) = '-';
  m text;
  ex int := 0;
  digits text;
  decpt int;
  out text;
begin
  if neg then r := substr(r, 2); end if;
  if r = 'Infinity' then return case when neg then '-Infinity' else 'Infinity' end; end if;
  if position('e' in r) > 0 then
    m := split_part(r, 'e', 1);
    ex := split_part(r, 'e', 2)::int;
  else
    m := r;
  end if;
  decpt := coalesce(nullif(position('.' in m), 0) - 1, length(m)) + ex;
  digits := replace(m, '.', '');
  while length(digits) > 1 and left(digits, 1) = '0' loop
    digits := substr(digits, 2);
    decpt := decpt - 1;
  end loop;
  digits := rtrim(digits, '0');
  if digits = '' then
    out := '0.0';
  elsif decpt <= -4 or decpt > 16 then
    ex := decpt - 1;
    out := left(digits, 1) || case when length(digits) > 1 then '.' || substr(digits, 2) else '' end
      || 'e' || case when ex < 0 then '-' else '+' end || case when abs(ex) < 10 then '0' else '' end || abs(ex);
  elsif decpt <= 0 then
    out := '0.' || repeat('0', -decpt) || digits;
  elsif decpt >= length(digits) then
    out := digits || repeat('0', decpt - length(digits)) || '.0';
  else
    out := left(digits, decpt) || '.' || substr(digits, decpt + 1);
  end if;
  return case when neg then '-' || out else out end;
end $$;

create or replace function ab_pyjson(value jsonb) returns text
language plpgsql immutable strict parallel safe as $$
declare
  kind text := jsonb_typeof(value);
  out text;
begin
  if kind = 'object' then
    select '{' || coalesce(string_agg(to_json(k)::text || ':' || ab_pyjson(v), ','
                                      order by k collate "C"), '') || '}'
      into out from jsonb_each(value) as o(k, v);
    return out;
  elsif kind = 'array' then
    select '[' || coalesce(string_agg(ab_pyjson(v), ',' order by n), '') || ']'
      into out from jsonb_array_elements(value) with ordinality as a(v, n);
    return out;
  elsif kind = 'number' then
    out := value::text;
    -- json.loads reads a number without a dot (jsonb writes no exponent) as an int
    return case when position('.' in out) = 0 then out else ab_pyfloat(out) end;
  end if;
  return value::text;  -- strings, true, false, null: json.dumps writes them alike
end $$;
"""
)

DOWNGRADE = """
drop function if exists ab_pyjson(jsonb);
drop function if exists ab_pyfloat(text);
drop function if exists ab_csv(text);
drop function if exists ab_fold(text);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
