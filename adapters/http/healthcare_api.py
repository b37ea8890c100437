"""Healthcare (API.md): patients, payers, coverages, providers, fee schedules,
encounters, claims and their 837P, 835 remittances, patient payments, AR by payer.

PHI — patient names, date of birth, address, member ids, diagnoses — is shown
only to keys whose role may see it (admin, billing_staff); other keys get the
same documents without those fields. Every PHI read or write through these
routes is appended to the PHI access log (who, when, which patient, which
endpoint); the X12 837P, being all PHI, needs the permission outright.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery, JSONBody

from adapters.http.commands import require, run_command
from adapters.http.problems import ApiError
from adapters.http.routes import Reader, Run, Tx, book_today, command, json_response
from adapters.keys import Permission, Principal
from adapters.runtime import Runtime
from adapters.x12.claims import submit_claim, submitted_837
from adapters.x12.remittance_files import quarantine_json, quarantine_on_refusal
from adapters.x12.x835 import parse_835
from billing.postgres import healthcare as store
from billing.postgres.healthcare_quarantine import quarantined, quarantined_file
from billing.postgres.healthcare_remittances import import_remittances

MAX_REMITTANCE_BYTES = 20 * 1024 * 1024


class AddressIn(msgspec.Struct, forbid_unknown_fields=True):
    line1: str
    city: str
    state: str
    postal_code: str
    line2: str | None = None


class PatientIn(msgspec.Struct, forbid_unknown_fields=True):
    first_name: str
    last_name: str
    date_of_birth: date
    gender: str
    address: AddressIn
    guarantor: dict[str, Any] | None = None


class PayerIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    payer_id: str
    claim_filing_indicator: str = "CI"


class CoverageIn(msgspec.Struct, forbid_unknown_fields=True):
    patient: str
    payer: str
    member_id: str
    priority: str = "primary"
    group_number: str | None = None
    effective_from: date | None = None
    effective_to: date | None = None


class ProviderIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    npi: str
    first_name: str | None = None
    tax_id: str | None = None
    taxonomy: str | None = None
    address: AddressIn | None = None


class FeeItemIn(msgspec.Struct, forbid_unknown_fields=True):
    code: str
    amount: str
    modifiers: list[str] = []
    allowed: dict[str, str] = {}  # payer (id or payer_id) → contracted amount


class FeeScheduleIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    items: list[FeeItemIn]
    currency: str | None = None


class ChargeIn(msgspec.Struct, forbid_unknown_fields=True):
    code: str
    modifiers: list[str] = []
    units: str = "1"
    diagnosis_pointers: list[int] = msgspec.field(default_factory=lambda: [1])


class EncounterIn(msgspec.Struct, forbid_unknown_fields=True):
    patient: str
    provider: str
    date_of_service: date
    diagnoses: list[str]
    charges: list[ChargeIn]
    place_of_service: str = "11"
    fee_schedule: str | None = None
    rendering_provider: str | None = None  # who performed the service, if not `provider`


class ClaimIn(msgspec.Struct, forbid_unknown_fields=True):
    encounter: str
    payer: str | None = None
    control_number: str | None = None


class ClaimStatusIn(msgspec.Struct, forbid_unknown_fields=True):
    status: str


class PatientPaymentIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: str
    method: str = "card"
    currency: str | None = None
    received_on: date | None = None


def _plain(value: msgspec.Struct) -> dict[str, Any]:
    return msgspec.to_builtins(value, builtin_types=(date,))  # type: ignore[no-any-return]


def _money(amount: Decimal | int) -> str:
    return f"{Decimal(amount):.2f}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def sees_phi(principal: Principal) -> bool:
    return principal.may(Permission.SEE_PHI)


def patient_json(row: dict[str, Any], phi: bool, balance: Decimal | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": str(row["id"]),
        "object": "patient",
        "created_at": row["created_at"].isoformat(),
        "phi": phi,
    }
    if balance is not None:
        doc["balance"] = _money(balance)
    if phi:
        doc.update(
            first_name=row["first_name"],
            last_name=row["last_name"],
            date_of_birth=row["date_of_birth"].isoformat(),
            gender=row["gender"],
            address=row["address"],
            guarantor=row["guarantor"],
        )
    return doc


def payer_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "object": "payer",
        "name": row["name"],
        "payer_id": row["payer_id"],
        "claim_filing_indicator": row["claim_filing_indicator"],
        "created_at": row["created_at"].isoformat(),
    }


def coverage_json(row: dict[str, Any], phi: bool) -> dict[str, Any]:
    doc = {
        "id": str(row["id"]),
        "object": "coverage",
        "patient": str(row["patient_id"]),
        "payer": str(row["payer_id"]),
        "priority": row["priority"],
        "group_number": row["group_number"],
        "effective_from": _iso(row["effective_from"]),
        "effective_to": _iso(row["effective_to"]),
        "created_at": row["created_at"].isoformat(),
        "phi": phi,
    }
    if phi:
        doc["member_id"] = row["member_id"]
    return doc


def provider_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "object": "provider",
        "name": row["name"],
        "first_name": row["first_name"],
        "npi": row["npi"],
        "tax_id": row["tax_id"],
        "taxonomy": row["taxonomy"],
        "address": row["address"],
        "created_at": row["created_at"].isoformat(),
    }


def fee_schedule_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "object": "fee_schedule",
        "name": row["name"],
        "currency": row["currency"],
        "items": [
            {
                "code": i["code"],
                "modifiers": [m for m in i["modifiers"].split(":") if m],
                "amount": _money(i["amount"]),
                "allowed": {p: _money(Decimal(a)) for p, a in i["allowed"].items()},
            }
            for i in row["items"]
        ],
        "created_at": row["created_at"].isoformat(),
    }


def encounter_json(row: dict[str, Any], phi: bool) -> dict[str, Any]:
    doc = {
        "id": str(row["id"]),
        "object": "encounter",
        "patient": str(row["patient_id"]),
        "provider": str(row["provider_id"]),
        "rendering_provider": (
            str(row["rendering_provider_id"]) if row["rendering_provider_id"] else None
        ),
        "payer": str(row["payer_id"]) if row["payer_id"] else None,
        "fee_schedule": str(row["fee_schedule_id"]),
        "date_of_service": row["date_of_service"].isoformat(),
        "place_of_service": row["place_of_service"],
        "currency": row["currency"],
        "total": _money(row["total"]),
        "entry": str(row["entry_id"]) if row["entry_id"] else None,
        "charges": [
            {
                "line": c["line_no"],
                "code": c["code"],
                "modifiers": c["modifiers"],
                "units": format(Decimal(c["units"]).normalize(), "f"),
                "amount": _money(c["amount"]),
                **({"diagnosis_pointers": c["diagnosis_pointers"]} if phi else {}),
            }
            for c in row["charges"]
        ],
        "created_at": row["created_at"].isoformat(),
        "phi": phi,
    }
    if phi:
        doc["diagnoses"] = row["diagnoses"]
    return doc


def claim_json(row: dict[str, Any], phi: bool) -> dict[str, Any]:
    billed, paid = Decimal(row["billed"]), Decimal(row["paid"])
    adjusted, pr = Decimal(row["adjusted"]), Decimal(row["patient_responsibility"])
    doc = {
        "id": str(row["id"]),
        "object": "claim",
        "control_number": row["control_number"],
        "encounter": str(row["encounter_id"]),
        "patient": str(row["patient_id"]),
        "payer": str(row["payer_id"]),
        "coverage": str(row["coverage_id"]),
        "priority": row["priority"],
        "status": row["status"],
        "currency": row["currency"],
        "date_of_service": row["date_of_service"].isoformat(),
        "billed": _money(billed),
        "paid": _money(paid),
        "adjusted": _money(adjusted),
        "patient_responsibility": _money(pr),
        # A primary claim's AR is the charge entry's; a secondary's, what it took over.
        "payer_balance": _money(
            Decimal(row["payer_postings"]) + (billed if row["priority"] == "primary" else 0)
        ),
        "submitted_at": _iso(row["submitted_at"]),
        "interchange_control": row["interchange_control"],
        "created_at": row["created_at"].isoformat(),
        "phi": phi,
    }
    if phi:
        doc.update(member_id=row["member_id"], diagnoses=row["diagnoses"])
    return doc


def _log(tx: Tx, patients: Sequence[uuid.UUID], action: str, endpoint: str) -> None:
    p = tx.principal
    store.log_phi(tx.conn, p.book_id, p.key_id, p.role.value, patients, action, endpoint)


def _log_read(
    conn: psycopg.Connection, principal: Principal, patients: Sequence[uuid.UUID], endpoint: str
) -> None:
    """A PHI read is a write to the access log: committed before the answer goes out."""
    if sees_phi(principal):
        store.log_phi(
            conn,
            principal.book_id,
            principal.key_id,
            principal.role.value,
            patients,
            "read",
            endpoint,
        )
        conn.commit()


def remittance_upload(form: dict[str, Any]) -> tuple[str, bytes]:
    upload = form.get("file")
    if isinstance(upload, list):
        raise ApiError(400, "one_file_only", "upload one 835 file per request")
    if not isinstance(upload, UploadFile):
        raise ApiError(
            400, "file_missing", "send the 835 as multipart/form-data with a `file` part"
        )
    data = upload.file.read(MAX_REMITTANCE_BYTES + 1)
    if len(data) > MAX_REMITTANCE_BYTES:
        raise ApiError(
            413, "file_too_large", f"835 files are limited to {MAX_REMITTANCE_BYTES} bytes"
        )
    return upload.filename or "upload.835", data


def decode_x12(content: bytes) -> str:
    if b"\x00" in content:
        raise ApiError(422, "nul_byte", "the file holds a NUL byte: it is not an X12 835")
    return content.decode("latin-1")  # X12 is ASCII; latin-1 never fails to decode


class HealthcareController(Controller):
    path = "/v1"
    tags = ["healthcare"]

    @command("/patients", "createPatient", Permission.BILLING_WRITE)
    def create_patient(self, data: JSONBody[PatientIn], run: Run) -> Response[bytes]:
        body = _plain(data)

        def work(tx: Tx) -> dict[str, Any]:
            row = store.create_patient(tx.conn, tx.book_id, body)
            _log(tx, [row["id"]], "write", "POST /v1/patients")
            return patient_json(row, sees_phi(tx.principal), Decimal(0))

        return run(data, work)

    @get("/patients/{ref:str}", operation_id="getPatient", sync_to_thread=True)
    def get_patient(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal, logs_access=True) as conn:
            row = store.get_patient(conn, principal.book_id, ref)
            balance = store.patient_balance(conn, principal.book_id, row["id"])
            _log_read(conn, principal, [row["id"]], "GET /v1/patients/{id}")
        return json_response(patient_json(row, sees_phi(principal), balance))

    @get("/patients/{ref:str}/access-log", operation_id="getPatientAccessLog", sync_to_thread=True)
    def access_log(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        require(principal, Permission.MANAGE_KEYS)  # admins: who saw which patient
        with Reader(runtime, principal) as conn:
            row = store.get_patient(conn, principal.book_id, ref)
            found = store.phi_log(conn, principal.book_id, row["id"])
        return json_response(
            {
                "object": "phi_access_log",
                "patient": str(row["id"]),
                "data": [
                    {
                        "at": r["at"].isoformat(),
                        "key_id": str(r["key_id"]) if r["key_id"] else None,
                        "actor": r["actor"],
                        "action": r["action"],
                        "endpoint": r["endpoint"],
                    }
                    for r in found
                ],
            }
        )

    @command("/payers", "createPayer", Permission.BILLING_WRITE)
    def create_payer(self, data: JSONBody[PayerIn], run: Run) -> Response[bytes]:
        body = _plain(data)
        return run(data, lambda tx: payer_json(store.create_payer(tx.conn, tx.book_id, body)))

    @command("/coverages", "createCoverage", Permission.BILLING_WRITE)
    def create_coverage(self, data: JSONBody[CoverageIn], run: Run) -> Response[bytes]:
        body = _plain(data)
        for key in ("effective_from", "effective_to"):
            body[key] = getattr(data, key)

        def work(tx: Tx) -> dict[str, Any]:
            row = store.create_coverage(tx.conn, tx.book_id, body)
            _log(tx, [row["patient_id"]], "write", "POST /v1/coverages")
            return coverage_json(row, sees_phi(tx.principal))

        return run(data, work)

    @command("/providers", "createProvider", Permission.BILLING_WRITE)
    def create_provider(self, data: JSONBody[ProviderIn], run: Run) -> Response[bytes]:
        body = _plain(data)
        return run(data, lambda tx: provider_json(store.create_provider(tx.conn, tx.book_id, body)))

    @command("/fee-schedules", "createFeeSchedule", Permission.BILLING_WRITE)
    def create_fee_schedule(self, data: JSONBody[FeeScheduleIn], run: Run) -> Response[bytes]:
        body = _plain(data)
        return run(
            data,
            lambda tx: fee_schedule_json(store.create_fee_schedule(tx.conn, tx.book_id, body)),
        )

    @command("/encounters", "createEncounter", Permission.BILLING_WRITE)
    def create_encounter(self, data: JSONBody[EncounterIn], run: Run) -> Response[bytes]:
        body = _plain(data)
        body["date_of_service"] = data.date_of_service

        def work(tx: Tx) -> dict[str, Any]:
            row = store.create_encounter(tx.conn, tx.book_id, body)
            _log(tx, [row["patient_id"]], "write", "POST /v1/encounters")
            return encounter_json(row, sees_phi(tx.principal))

        return run(data, work)

    @get("/encounters/{ref:str}", operation_id="getEncounter", sync_to_thread=True)
    def get_encounter(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal, logs_access=True) as conn:
            row = store.get_encounter(conn, principal.book_id, ref)
            _log_read(conn, principal, [row["patient_id"]], "GET /v1/encounters/{id}")
        return json_response(encounter_json(row, sees_phi(principal)))

    @command("/claims", "createClaim", Permission.BILLING_WRITE)
    def create_claim(self, data: JSONBody[ClaimIn], run: Run) -> Response[bytes]:
        body = _plain(data)

        def work(tx: Tx) -> dict[str, Any]:
            row = store.create_claim(tx.conn, tx.book_id, body)
            _log(tx, [row["patient_id"]], "write", "POST /v1/claims")
            return claim_json(row, sees_phi(tx.principal))

        return run(data, work)

    @get("/claims/{ref:str}", operation_id="getClaim", sync_to_thread=True)
    def get_claim(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        with Reader(runtime, principal, logs_access=True) as conn:
            row = store.get_claim(conn, principal.book_id, ref)
            _log_read(conn, principal, [row["patient_id"]], "GET /v1/claims/{id}")
        return json_response(claim_json(row, sees_phi(principal)))

    @command("/claims/{ref:str}/status", "setClaimStatus", Permission.BILLING_WRITE, status=200)
    def set_status(
        self, ref: FromPath[str], data: JSONBody[ClaimStatusIn], run: Run
    ) -> Response[bytes]:
        def work(tx: Tx) -> dict[str, Any]:
            row = store.set_claim_status(tx.conn, tx.book_id, ref, data.status)
            return claim_json(row, sees_phi(tx.principal))

        return run({"ref": ref, "body": data}, work)

    @command("/claims/{ref:str}/submit", "submitClaim", Permission.BILLING_WRITE, status=200)
    def submit_claim(self, ref: FromPath[str], run: Run) -> Response[bytes]:
        """Generate the claim's 837P (the book's next control number), keep it, and move
        a draft (or rejected) claim to submitted. The interchange is all PHI."""

        require(run.principal, Permission.SEE_PHI)

        def work(tx: Tx) -> dict[str, Any]:
            row = submit_claim(tx.conn, tx.book_id, ref, datetime.now(UTC))
            _log(tx, [row["patient_id"]], "write", "POST /v1/claims/{id}/submit")
            return claim_json(row, True)

        return run({"ref": ref}, work)

    @get("/claims/{ref:str}/837", operation_id="getClaim837", sync_to_thread=True)
    def claim_837(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        """The interchange the claim's submission generated, the same on every read;
        409 before the claim is submitted."""
        require(principal, Permission.SEE_PHI)
        with Reader(runtime, principal, logs_access=True) as conn:
            claim = store.get_claim(conn, principal.book_id, ref)
            text = submitted_837(conn, principal.book_id, ref)
            _log_read(conn, principal, [claim["patient_id"]], "GET /v1/claims/{id}/837")
        return Response(content=text.encode("ascii", "replace"), media_type="text/plain")

    @post("/remittances", operation_id="importRemittance", sync_to_thread=True)
    def import_remittance(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response[bytes]:
        require(principal, Permission.BILLING_WRITE)
        name, content = remittance_upload(data)
        sha = hashlib.sha256(content).hexdigest()
        with quarantine_on_refusal(runtime.connection, principal.book_id, name, content, sha):
            parsed = parse_835(decode_x12(content))  # parsed before a connection is taken

            def work(conn: psycopg.Connection) -> tuple[int, Any]:
                today = book_today(conn, runtime, principal)
                result = import_remittances(conn, principal.book_id, parsed, sha, today)
                fresh = any(not r["duplicate"] for r in result["remittances"])
                return (201 if fresh else 200), result

            return run_command(runtime, request, principal, {"file_sha256": sha}, work)

    @get("/remittances/quarantine", operation_id="listQuarantinedRemittances", sync_to_thread=True)
    def quarantine(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        limit: FromQuery[int] = 100,
    ) -> Response[bytes]:
        """835 files refused whole (nothing posted), newest first, with the reason."""
        if not 1 <= limit <= 1000:
            raise ApiError(422, "invalid_limit", "limit is 1 to 1000")
        with Reader(runtime, principal) as conn:
            rows = quarantined(conn, principal.book_id, limit)
        return json_response({"object": "list", "data": [quarantine_json(r) for r in rows]})

    @get(
        "/remittances/quarantine/{ref:str}/file",
        operation_id="getQuarantinedRemittanceFile",
        sync_to_thread=True,
    )
    def quarantined_file(
        self,
        ref: FromPath[str],
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
    ) -> Response[bytes]:
        """The refused file as received: 835s name patients, so it is PHI."""
        require(principal, Permission.SEE_PHI)
        with Reader(runtime, principal) as conn:
            content = quarantined_file(conn, principal.book_id, ref)
        if content is None:
            raise ApiError(404, "not_found", f"quarantined remittance {ref!r} does not exist")
        return Response(content=content, media_type="text/plain")

    @command("/patients/{ref:str}/payments", "createPatientPayment", Permission.BILLING_WRITE)
    def patient_payment(
        self, ref: FromPath[str], data: JSONBody[PatientPaymentIn], run: Run
    ) -> Response[bytes]:
        body = _plain(data)
        body["received_on"] = data.received_on

        def work(tx: Tx) -> dict[str, Any]:
            row = store.create_patient_payment(tx.conn, tx.book_id, ref, body, tx.today())
            return {
                "id": str(row["id"]),
                "object": "patient_payment",
                "patient": str(row["patient_id"]),
                "amount": _money(row["amount"]),
                "currency": row["currency"],
                "method": row["method"],
                "received_on": row["received_on"].isoformat(),
                "entry": str(row["entry_id"]),
                "patient_balance": _money(row["balance"]),
            }

        return run({"ref": ref, "body": data}, work)

    @get("/reports/ar-by-payer", operation_id="getArByPayer", sync_to_thread=True)
    def ar_by_payer(
        self,
        principal: NamedDependency[Principal],
        runtime: NamedDependency[Runtime],
        as_of: FromQuery[date | None] = None,
        basis: FromQuery[str] = "date_of_service",
    ) -> Response[bytes]:
        with Reader(runtime, principal) as conn:
            day = as_of or book_today(conn, runtime, principal)
            rows = store.ar_by_payer(conn, principal.book_id, day, basis)
        return json_response(ar_by_payer_json(day, rows, basis))


def ar_by_payer_json(day: date, rows: list[dict[str, Any]], basis: str) -> dict[str, Any]:
    return {
        "object": "ar_by_payer",
        "as_of": day.isoformat(),
        "basis": basis,
        "payers": [
            {
                "payer": r["payer"],
                "name": r["name"],
                "currency": r["currency"],
                "total": _money(r["total"]),
                "buckets": {k: _money(v) for k, v in r["buckets"].items()},
            }
            for r in rows
        ],
    }
