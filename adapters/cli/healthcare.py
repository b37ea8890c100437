"""Healthcare commands (API.md): `encounters create`, `claims submit`,
`claims export-837`, `remittances import`, `patients statement`,
`patients write-off-small-balances`, and the revenue-cycle reports under
`report` (ar-by-payer, denials, days-in-ar, net-collection-rate,
expected-payments)."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from adapters.cli.common import BOOK_HELP, CliError, _book_id, _date, _print
from adapters.runtime import open_runtime, utc_today
from ledger.postgres.books import get_book
from ledger.postgres.unit_of_work import unit_of_work


def cmd_encounters_create(args: argparse.Namespace) -> int:
    """An encounter from a JSON file shaped as POST /v1/encounters' body."""
    import msgspec

    from adapters.http.healthcare_api import EncounterIn, encounter_json
    from billing.postgres import healthcare as store

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    try:
        body_in = msgspec.json.decode(data, type=EncounterIn)
    except msgspec.DecodeError as exc:  # ValidationError included: it names the field
        raise CliError(f"{args.file}: {exc}") from None
    body = msgspec.to_builtins(body_in, builtin_types=(date,))
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            row = store.create_encounter(uow.conn, book_id, body)
            store.log_phi(
                uow.conn, book_id, None, "cli", [row["patient_id"]], "write",
                "activebilling encounters create",
            )  # fmt: skip
            uow.commit()
    document = encounter_json(row, True)
    _print(args, document, f"encounter {document['id']}  {document['total']}")
    return 0


def cmd_claims_submit(args: argparse.Namespace) -> int:
    from adapters.x12.claims import submit_claim
    from billing.postgres import healthcare as store

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            claim = submit_claim(uow.conn, book_id, args.claim, datetime.now(UTC))
            store.log_phi(
                uow.conn, book_id, None, "cli", [claim["patient_id"]], "write",
                "activebilling claims submit",
            )  # fmt: skip
            uow.commit()
    document = {
        "id": str(claim["id"]),
        "control_number": claim["control_number"],
        "status": claim["status"],
        "interchange_control": claim["interchange_control"],
    }
    _print(
        args,
        document,
        f"claim {claim['control_number']} submitted, interchange {claim['interchange_control']}",
    )
    return 0


def cmd_claims_export_837(args: argparse.Namespace) -> int:
    from adapters.x12.claims import submitted_837
    from billing.postgres import healthcare as store

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            claim = store.get_claim(uow.conn, book_id, args.claim)
            text = submitted_837(uow.conn, book_id, args.claim)
            store.log_phi(
                uow.conn,
                book_id,
                None,
                "cli",
                [claim["patient_id"]],
                "read",
                "activebilling claims export-837",
            )
            uow.commit()
    if args.out:
        Path(args.out).write_text(text, encoding="ascii")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_patients_statement(args: argparse.Namespace) -> int:
    from adapters.http.healthcare_patients_api import statement_json
    from adapters.patient_statement import render_statement_html
    from billing.postgres import healthcare as store
    from billing.postgres import healthcare_patients as patients

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            book = get_book(uow.conn, book_id)
            day = args.as_of or book.today(utc_today())
            raw = patients.statement(uow.conn, book_id, args.patient, day)
            store.log_phi(
                uow.conn, book_id, None, "cli", [raw["patient"]["id"]], "read",
                "activebilling patients statement",
            )  # fmt: skip
            uow.commit()
    document = statement_json(raw)
    if args.html:
        text = render_statement_html(document, book.name)
    else:
        t = document["totals"]
        rows = [
            f"{e['date_of_service']}  charges {e['charges']}  insurance {e['insurance_paid']}"
            f"  adjusted {e['adjustments']}  patient {e['patient_responsibility']}"
            f"  paid {e['payments']}  written off {e['write_offs']}  balance {e['balance']}"
            for e in document["encounters"]
        ]
        rows.append(f"amount due {t['amount_due']}  credit balance {t['credit_balance']}")
        text = "\n".join(rows)
    if args.out:
        Path(args.out).write_text(
            text if args.html or args.format != "json" else json.dumps(document, indent=2),
            encoding="utf-8",
        )
        print(f"wrote {args.out}", file=sys.stderr)
    elif args.html:
        sys.stdout.write(text)
    else:
        _print(args, document, text)
    return 0


def cmd_patients_write_off(args: argparse.Namespace) -> int:
    from billing.postgres import healthcare_patients as patients

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with unit_of_work(runtime.connection) as uow:
            today = get_book(uow.conn, book_id).today(utc_today())
            body = {"as_of": args.as_of or today, "max_amount": args.max_amount}
            fresh, summary = patients.write_off_small_balances(uow.conn, book_id, body, today)
            uow.commit()
    state = "written off" if fresh else "already run with these figures, nothing posted"
    rows = [f"{summary['total']} {summary['currency']} {state} to {summary['account']}"]
    rows += [f"  patient {p['patient']}  {p['amount']}" for p in summary["patients"]]
    _print(args, summary, "\n".join(rows))
    return 0


def _report(args: argparse.Namespace, build: Callable[[Any, Any, Any], dict[str, Any]]) -> int:
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with runtime.connection() as conn:
            today = get_book(conn, book_id).today(utc_today())
            document = build(conn, book_id, today)
    _print(args, document, json.dumps(document, indent=2))
    return 0


def cmd_report_ar_by_payer(args: argparse.Namespace) -> int:
    from adapters.http.healthcare_api import ar_by_payer_json
    from billing.postgres import healthcare as store

    def build(conn: Any, book_id: Any, today: Any) -> dict[str, Any]:
        day = args.as_of or today
        return ar_by_payer_json(day, store.ar_by_payer(conn, book_id, day, args.basis), args.basis)

    return _report(args, build)


def _range(args: argparse.Namespace, today: date) -> tuple[date, date]:
    end = args.date_to or today
    return args.date_from or end.replace(month=1, day=1), end


def cmd_report_denials(args: argparse.Namespace) -> int:
    from adapters.http.healthcare_patients_api import denials_json
    from billing.postgres import healthcare_reports as reports

    return _report(
        args,
        lambda conn, book, today: denials_json(reports.denials(conn, book, *_range(args, today))),
    )


def cmd_report_days_in_ar(args: argparse.Namespace) -> int:
    from adapters.http.healthcare_patients_api import days_in_ar_json
    from billing.postgres import healthcare_reports as reports

    return _report(
        args,
        lambda conn, book, today: days_in_ar_json(
            reports.days_in_ar_report(conn, book, args.as_of or today, args.days)
        ),
    )


def cmd_report_net_collection_rate(args: argparse.Namespace) -> int:
    from adapters.http.healthcare_patients_api import net_collection_rate_json
    from billing.postgres import healthcare_reports as reports

    return _report(
        args,
        lambda conn, book, today: net_collection_rate_json(
            reports.net_collection_rate(conn, book, *_range(args, today))
        ),
    )


def cmd_report_expected_payments(args: argparse.Namespace) -> int:
    from adapters.http.healthcare_patients_api import expected_payments_json
    from billing.postgres import healthcare_reports as reports

    return _report(
        args,
        lambda conn, book, today: expected_payments_json(
            reports.expected_vs_actual(conn, book, *_range(args, today))
        ),
    )


def cmd_remittances_import(args: argparse.Namespace) -> int:
    from adapters.x12.remittance_files import quarantine_on_refusal
    from adapters.x12.x835 import parse_835
    from billing.postgres.healthcare_remittances import import_remittances

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    if b"\x00" in data:
        raise CliError(f"{args.file} holds a NUL byte: it is not an X12 835")
    sha = hashlib.sha256(data).hexdigest()
    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        # A refused file posts nothing and is kept in quarantine (`remittances quarantine`).
        with quarantine_on_refusal(runtime.connection, book_id, Path(args.file).name, data, sha):
            parsed = parse_835(data.decode("latin-1"))
            with unit_of_work(runtime.connection) as uow:
                today = get_book(uow.conn, book_id).today(utc_today())
                result = import_remittances(uow.conn, book_id, parsed, sha, today)
                uow.commit()
    rows = []
    for r in result["remittances"]:
        state = "already imported, nothing posted" if r["duplicate"] else "posted"
        rows.append(
            f"remittance {r['id']}  trace {r['trace_number']}  {r['payment_total']}  {state}"
        )
    rows += [
        f"  claim {c['control_number']}  paid {c['paid']}  {c['status']}" for c in result["claims"]
    ]
    rows += [f"  unmatched {u['control_number']}  paid {u['paid']}" for u in result["unmatched"]]
    _print(args, result, "\n".join(rows))
    return 0


def cmd_remittances_quarantine(args: argparse.Namespace) -> int:
    from adapters.x12.remittance_files import quarantine_json
    from billing.postgres.healthcare_quarantine import quarantined

    with open_runtime() as runtime:
        book_id = _book_id(runtime, args.book)
        with runtime.connection() as conn:
            rows = [quarantine_json(r) for r in quarantined(conn, book_id, args.limit)]
    text = "\n".join(
        f"{r['received_at']}  {r['file_name']}  {r['id']}\n  {r['code']}: {r['reason']}"
        for r in rows
    )
    _print(args, {"object": "list", "data": rows}, text or "no quarantined remittances")
    return 0


def _healthcare_parsers(
    sub: Any, command: Callable[..., argparse.ArgumentParser], report: Any
) -> None:
    encounters = sub.add_parser("encounters", help="healthcare encounters").add_subparsers(
        dest="encounters_command", required=True
    )
    enc = command(
        "create",
        cmd_encounters_create,
        "record an encounter's charges from a JSON file (the body of POST /v1/encounters)",
        encounters,
    )
    enc.add_argument("file", help="the encounter as JSON")
    enc.add_argument("--book", help=BOOK_HELP)

    claims = sub.add_parser("claims", help="healthcare claims").add_subparsers(
        dest="claims_command", required=True
    )
    submit = command(
        "submit",
        cmd_claims_submit,
        "submit a draft (or rejected) claim: its X12 837P is generated and kept",
        claims,
    )
    submit.add_argument("--claim", required=True, help="the claim's id")
    submit.add_argument("--book", help=BOOK_HELP)
    export = command(
        "export-837",
        cmd_claims_export_837,
        "write the X12 837P interchange the claim's submission generated",
        claims,
    )
    export.add_argument("--claim", required=True, help="the claim's id")
    export.add_argument("--book", help=BOOK_HELP)
    export.add_argument("--out", help="file to write (default: stdout)")

    remittances = sub.add_parser("remittances", help="healthcare remittances (835)")
    rem = remittances.add_subparsers(dest="remittances_command", required=True)
    imp = command(
        "import",
        cmd_remittances_import,
        "import an X12 835: refused whole unless it balances; a trace imports once",
        rem,
    )
    imp.add_argument("file", help="the 835 file")
    imp.add_argument("--book", help=BOOK_HELP)
    qua = command(
        "quarantine",
        cmd_remittances_quarantine,
        "835 files refused whole (nothing posted), newest first, with the reason",
        rem,
    )
    qua.add_argument("--limit", type=int, default=100, help="at most this many (100)")
    qua.add_argument("--book", help=BOOK_HELP)

    patients = sub.add_parser("patients", help="healthcare patients").add_subparsers(
        dest="patients_command", required=True
    )
    st = command(
        "statement", cmd_patients_statement, "what the patient owes after insurance (PHI)",
        patients,
    )  # fmt: skip
    st.add_argument("--patient", required=True, help="the patient's id")
    st.add_argument("--book", help=BOOK_HELP)
    st.add_argument("--as-of", type=_date, default=None, help="statement date (default: today)")
    st.add_argument("--html", action="store_true", help="the statement as HTML")
    st.add_argument("--out", help="file to write (default: stdout)")
    wo = command(
        "write-off-small-balances",
        cmd_patients_write_off,
        "write off patient balances up to --max-amount to Income:Contra:Small-Balance",
        patients,
    )
    wo.add_argument("--max-amount", required=True, help="the largest balance written off")
    wo.add_argument("--as-of", type=_date, default=None, help="balances on (default: today)")
    wo.add_argument("--book", help=BOOK_HELP)

    ar = command("ar-by-payer", cmd_report_ar_by_payer, "healthcare AR by payer, aged", report)
    ar.add_argument("--as-of", type=_date, default=None, help="AR on (default: today)")
    ar.add_argument(
        "--basis",
        choices=["date_of_service", "submission"],
        default="date_of_service",
        help="age from the date of service (default) or from the claim's submission",
    )
    for name, handler, helptext in (
        ("denials", cmd_report_denials, "denial rate by payer and CARC"),
        ("net-collection-rate", cmd_report_net_collection_rate,
         "payments ÷ (charges − contractual adjustments)"),
        ("expected-payments", cmd_report_expected_payments,
         "contracted (allowed) amounts against 835 payments, per payer"),
    ):  # fmt: skip
        r = command(name, handler, helptext, report)
        r.add_argument("--from", dest="date_from", type=_date, default=None, help="first day")
        r.add_argument("--to", dest="date_to", type=_date, default=None, help="last day")
        r.add_argument("--book", help=BOOK_HELP)
    dar = command("days-in-ar", cmd_report_days_in_ar, "AR ÷ average daily charges", report)
    dar.add_argument("--as-of", type=_date, default=None, help="AR on (default: today)")
    dar.add_argument("--days", type=int, default=90, help="the charges window (90 days)")
    for parser in (ar, dar):
        parser.add_argument("--book", help=BOOK_HELP)
