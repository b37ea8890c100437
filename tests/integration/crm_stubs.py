"""Local stand-ins for Salesforce and HubSpot, answering their documented shapes.

Salesforce (REST API, HTTPS with a throwaway self-signed certificate for
127.0.0.1, as simple-salesforce only speaks https): `GET
/services/data/vXX.X/query?q=SOQL` answers `{"totalSize", "done", "records",
"nextRecordsUrl"}` two records a page; `GET …/query/<locator>` the next page;
`PATCH …/sobjects/Account/{Id}` 204 (applied, LastModifiedDate moved). A bad
bearer token is a 401 `[{"errorCode": "INVALID_SESSION_ID", …}]`.

HubSpot (CRM v3, plain HTTP, the client takes the host): `GET
/crm/v3/objects/{companies|deals}` two results a page with `paging.next.after`,
`GET /crm/v3/objects/{type}/{id}`, `associations` as `{"contacts": {"results":
[{"id", "type"}]}}`, `PATCH /crm/v3/objects/companies/{id}` with
`{"properties": …}` answering the object.

Only the SOQL this service sends is understood: the object after the outer
FROM, `LastModifiedDate > …`, `Id = '…'`, `AccountId = '…'`, `IsWon = true`.
Every PATCH is kept (`patches`), and `fail_patches` makes the next N answer 503.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PAGE = 2
SF_VERSION = "59.0"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "stub.crt", directory / "stub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


@dataclass
class Patch:
    object: str
    id: str
    body: dict[str, Any]


@dataclass
class SalesforceStub:
    token: str = "00Dstub!token"
    url: str = ""
    ca_file: str = ""
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    contacts: list[dict[str, Any]] = field(default_factory=list)
    opportunities: list[dict[str, Any]] = field(default_factory=list)
    patches: list[Patch] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    fail_patches: int = 0
    _pages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    clock: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC))

    def tick(self) -> str:
        self.clock += dt.timedelta(minutes=1)
        return _stamp(self.clock)

    def add_account(self, record_id: str, **fields: Any) -> None:
        self.accounts[record_id] = {"Id": record_id, **fields, "LastModifiedDate": self.tick()}

    def change_account(self, record_id: str, **fields: Any) -> None:
        self.accounts[record_id].update(fields, LastModifiedDate=self.tick())

    # --- the API -----------------------------------------------------------------------

    def query(self, soql: str) -> dict[str, Any]:
        self.queries.append(soql)
        outer = re.sub(r"\(SELECT[^)]*\)", "", soql)
        obj = re.search(r"\bFROM (\w+)", outer)
        assert obj is not None, soql
        head = outer.split(" FROM ")[0].removeprefix("SELECT")
        fields = [f.strip() for f in head.split(",") if f.strip()]
        rows = self._rows(obj.group(1))
        since = re.search(r"LastModifiedDate > (\S+)", outer)
        if since:
            floor = dt.datetime.fromisoformat(since.group(1).replace("Z", "+00:00"))
            rows = [r for r in rows if _sf_time(r["LastModifiedDate"]) > floor]
        for column in ("Id", "AccountId"):
            wanted = re.search(rf"\b{column} = '(\w+)'", outer)
            if wanted:
                rows = [r for r in rows if r.get(column) == wanted.group(1)]
        if "IsWon = true" in outer:
            rows = [r for r in rows if r.get("IsWon")]
        if "ORDER BY LastModifiedDate" in outer:
            rows.sort(key=lambda r: (r["LastModifiedDate"], r["Id"]))
        limit = re.search(r"LIMIT (\d+)", outer)
        if limit:
            rows = rows[: int(limit.group(1))]
        records = [self._record(obj.group(1), r, fields, soql) for r in rows]
        return self._page(records, len(records))

    def _rows(self, name: str) -> list[dict[str, Any]]:
        if name == "Account":
            return list(self.accounts.values())
        if name == "Contact":
            return sorted(self.contacts, key=lambda c: c["CreatedDate"])
        if name == "Opportunity":
            return list(self.opportunities)
        raise AssertionError(f"the stub has no {name}")

    def _record(
        self, name: str, row: dict[str, Any], fields: list[str], soql: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": name,
                "url": f"/services/data/v{SF_VERSION}/sobjects/{name}/{row['Id']}",
            }
        }
        out.update({f: row.get(f) for f in fields})
        if "FROM OpportunityLineItems" in soql:
            lines = row.get("lines") or []
            out["OpportunityLineItems"] = (
                {
                    "totalSize": len(lines),
                    "done": True,
                    "records": [
                        {
                            "attributes": {"type": "OpportunityLineItem", "url": "/x"},
                            "Id": f"00k{row['Id'][3:]}{i}",
                            "Product2Id": line["Product2Id"],
                            "Quantity": line["Quantity"],
                        }
                        for i, line in enumerate(lines)
                    ],
                }
                if lines
                else None
            )
        return out

    def _page(self, records: list[dict[str, Any]], total: int) -> dict[str, Any]:
        body: dict[str, Any] = {"totalSize": total, "done": len(records) <= PAGE}
        body["records"] = records[:PAGE]
        if len(records) > PAGE:
            locator = f"01gD0000002HU6KIAW-{len(self._pages) + 1}"
            self._pages[locator] = records[PAGE:]
            body["nextRecordsUrl"] = f"/services/data/v{SF_VERSION}/query/{locator}"
        return body

    def more(self, locator: str) -> dict[str, Any]:
        records = self._pages.pop(locator)
        return self._page(records, len(records))

    def patch(self, name: str, record_id: str, body: dict[str, Any]) -> int:
        self.patches.append(Patch(name, record_id, body))
        if self.fail_patches:
            self.fail_patches -= 1
            return 503
        if record_id not in self.accounts:
            return 404
        self.accounts[record_id].update(body, LastModifiedDate=self.tick())
        return 204


def _sf_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", text))


@contextmanager
def salesforce_stub(directory: Path) -> Iterator[SalesforceStub]:
    stub = SalesforceStub()
    lock = threading.Lock()
    base = f"/services/data/v{SF_VERSION}"

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {stub.token}":
                return True
            self._answer(
                401,
                [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
            )
            return False

        def do_GET(self) -> None:
            if not self._authorized():
                return
            parts = urlsplit(self.path)
            with lock:
                if parts.path == f"{base}/query/":
                    body = stub.query(parse_qs(parts.query)["q"][0])
                elif parts.path.startswith(f"{base}/query/"):
                    body = stub.more(parts.path.rsplit("/", 1)[1])
                else:
                    self._answer(404, [{"errorCode": "NOT_FOUND", "message": parts.path}])
                    return
            self._answer(200, body)

        def do_PATCH(self) -> None:
            if not self._authorized():
                return
            match = re.fullmatch(rf"{base}/sobjects/(\w+)/(\w+)", urlsplit(self.path).path)
            assert match is not None, self.path
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                status = stub.patch(match.group(1), match.group(2), body)
            if status == 204:
                self._answer(204)
            else:
                self._answer(status, [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}])

        def log_message(self, *args: Any) -> None:
            pass

    cert, key = self_signed(directory)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    stub.url = f"https://127.0.0.1:{server.server_address[1]}"
    stub.ca_file = str(cert)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


# --- HubSpot ---------------------------------------------------------------------------------


def _hs_time(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class HubSpotStub:
    token: str = "pat-na1-stub"
    url: str = ""
    objects: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {"companies": {}, "contacts": {}, "deals": {}, "line_items": {}}
    )
    patches: list[Patch] = field(default_factory=list)
    fail_patches: int = 0
    clock: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC))

    def tick(self) -> dt.datetime:
        self.clock += dt.timedelta(minutes=1)
        return self.clock

    def add(self, kind: str, object_id: str, associations: Any = None, **props: Any) -> None:
        now = self.tick()
        self.objects[kind][object_id] = {
            "properties": {k: None if v is None else str(v) for k, v in props.items()},
            "associations": associations or {},
            "createdAt": now,
            "updatedAt": now,
        }

    def change(self, kind: str, object_id: str, **props: Any) -> None:
        found = self.objects[kind][object_id]
        found["properties"].update({k: str(v) for k, v in props.items()})
        found["updatedAt"] = self.tick()

    def shape(
        self, kind: str, object_id: str, properties: list[str], associations: list[str]
    ) -> dict[str, Any]:
        found = self.objects[kind][object_id]
        props = {"hs_object_id": object_id}
        props.update({p: found["properties"].get(p) for p in properties})
        out: dict[str, Any] = {
            "id": object_id,
            "properties": props,
            "createdAt": _hs_time(found["createdAt"]),
            "updatedAt": _hs_time(found["updatedAt"]),
            "archived": False,
        }
        linked = {
            name: {
                "results": [
                    {"id": i, "type": f"{kind[:-1]}_to_{name[:-1]}"}
                    for i in found["associations"].get(name, [])
                ]
            }
            for name in associations
            if found["associations"].get(name)
        }
        if linked:
            out["associations"] = linked
        return out


def _listed(query: dict[str, list[str]], name: str) -> list[str]:
    return [x for v in query.get(name, []) for x in v.split(",") if x]


@contextmanager
def hubspot_stub() -> Iterator[HubSpotStub]:
    stub = HubSpotStub()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {stub.token}":
                return True
            self._answer(
                401,
                {
                    "status": "error",
                    "message": "Authentication credentials not found.",
                    "category": "INVALID_AUTHENTICATION",
                },
            )
            return False

        def do_GET(self) -> None:
            if not self._authorized():
                return
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            props, assoc = _listed(query, "properties"), _listed(query, "associations")
            match = re.fullmatch(r"/crm/v3/objects/(\w+)(?:/(\w+))?", parts.path)
            if match is None or match.group(1) not in stub.objects:
                self._answer(404, {"status": "error", "message": "not found"})
                return
            kind, object_id = match.groups()
            with lock:
                if object_id is not None:
                    if object_id not in stub.objects[kind]:
                        self._answer(404, {"status": "error", "message": "not found"})
                        return
                    self._answer(200, stub.shape(kind, object_id, props, assoc))
                    return
                ids = sorted(stub.objects[kind], key=int)
                start = int(query.get("after", ["0"])[0])
                limit = int(query.get("limit", ["10"])[0])
                size = min(limit, PAGE)
                body: dict[str, Any] = {
                    "results": [
                        stub.shape(kind, i, props, assoc) for i in ids[start : start + size]
                    ]
                }
                if start + size < len(ids):
                    after = str(start + size)
                    body["paging"] = {
                        "next": {"after": after, "link": f"{stub.url}{parts.path}?after={after}"}
                    }
            self._answer(200, body)

        def do_PATCH(self) -> None:
            if not self._authorized():
                return
            match = re.fullmatch(r"/crm/v3/objects/companies/(\w+)", urlsplit(self.path).path)
            assert match is not None, self.path
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            company = match.group(1)
            with lock:
                stub.patches.append(Patch("companies", company, body))
                if stub.fail_patches:
                    stub.fail_patches -= 1
                    self._answer(503, {"status": "error", "message": "unavailable"})
                    return
                stub.change("companies", company, **body["properties"])
                shaped = stub.shape("companies", company, list(body["properties"]), [])
            self._answer(200, shaped)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
