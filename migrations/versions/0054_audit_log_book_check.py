"""The audit log's book checked once per statement, without locking the book's row.

The foreign key `fk_audit_log_book_id_books` locked the book's `books` row FOR KEY
SHARE for every audit row: each HTTP post of 8 concurrent ones wrote a lock on the
one row (a WAL record, and a new MultiXact with every locker still in it, as
pg_stat_slru showed) and queued for the exclusive lock of that row's page. The
check is now an AFTER INSERT statement trigger over the new rows (one query per
statement, no row lock), with the foreign key's SQLSTATE, constraint name and
message; `books` refuses to drop or rekey a book audit rows name, as the foreign
key's NO ACTION did. What the lock also gave — a book deleted by another
transaction while an audit row naming it commits — cannot happen through the
service: its role may not delete or update books (only the schema's owner can).

Revision ID: 0054
Revises: 0053
Create Date: 2026-12-01 13:55:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0054"
down_revision: str | None = "0053"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        create function ab_audit_log_books_exist() returns trigger
        language plpgsql as $$
        declare
          missing uuid;
        begin
          select n.book_id into missing
            from new_rows n
           where not exists (select from books b where b.id = n.book_id)
           limit 1;
          if found then
            raise foreign_key_violation using
              constraint = 'fk_audit_log_book_id_books',
              table = 'audit_log',
              message = 'insert or update on table "audit_log" violates foreign key'
                        || ' constraint "fk_audit_log_book_id_books"',
              detail = format('Key (book_id)=(%s) is not present in table "books".', missing);
          end if;
          return null;
        end
        $$;

        create function ab_books_keep_audited() returns trigger
        language plpgsql as $$
        begin
          if tg_op = 'UPDATE' and new.id = old.id then
            return null;
          end if;
          if exists (select from audit_log a where a.book_id = old.id) then
            raise foreign_key_violation using
              constraint = 'fk_audit_log_book_id_books',
              table = 'books',
              message = 'update or delete on table "books" violates foreign key'
                        || ' constraint "fk_audit_log_book_id_books" on table "audit_log"',
              detail = format('Key (id)=(%s) is still referenced from table "audit_log".', old.id);
          end if;
          return null;
        end
        $$;

        alter table audit_log drop constraint fk_audit_log_book_id_books;
        create trigger audit_log_books_exist after insert on audit_log
          referencing new table as new_rows
          for each statement execute function ab_audit_log_books_exist();
        create trigger books_keep_audited after delete or update of id on books
          for each row execute function ab_books_keep_audited();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop trigger books_keep_audited on books;
        drop trigger audit_log_books_exist on audit_log;
        drop function ab_books_keep_audited();
        drop function ab_audit_log_books_exist();
        alter table audit_log add constraint fk_audit_log_book_id_books
          foreign key (book_id) references books (id);
        """
    )
