"""One entry point: bytes in, statements out, whatever the bank sent."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, tzinfo

from .camt053 import read_camt053
from .csv_mapping import CsvMapping, read_csv
from .model import Statement, StatementError
from .ofx import read_ofx
from .swift_mt940 import read_mt940

_Reader = Callable[[bytes], tuple[list[Statement], list[StatementError]]]

_ALIASES = {
    "camt.053": "camt.053",
    "camt053": "camt.053",
    "camt": "camt.053",
    "ofx": "ofx",
    "qfx": "ofx",
    "csv": "csv",
    "mt940": "mt940",
    "sta": "mt940",
}
_ISO20022 = re.compile(rb"urn:iso:std:iso:20022:tech:xsd:camt\.")
_XML_DOCUMENT = re.compile(rb"^(\xef\xbb\xbf)?\s*(<\?xml[^>]*>\s*)?<Document[\s>]")
_OFX = re.compile(rb"OFXHEADER|<OFX>", re.IGNORECASE)
# MT940: a :20: reference field at a line start and the :25: account field.
_MT940 = re.compile(rb"(?m)^:20:[^\n]*\n(?:.*\n)*?:25:")


def parse_statement(
    data: bytes,
    format: str | None = None,
    csv_mapping: CsvMapping | None = None,
    time_zone: tzinfo = UTC,
) -> list[Statement]:
    """Parse and check a statement file; raise the first problem found.

    `time_zone` is the bank account's: date-times with an offset are booked
    on their calendar day there.
    """
    statements, errors = read_statement(data, format, csv_mapping, time_zone)
    if errors:
        raise errors[0]
    return statements


def read_statement(
    data: bytes,
    format: str | None = None,
    csv_mapping: CsvMapping | None = None,
    time_zone: tzinfo = UTC,
) -> tuple[list[Statement], list[StatementError]]:
    """Parse a statement file and return every problem it shows, as values."""
    name = detect_format(data) if format is None else _named(format)
    return _reader(name, csv_mapping, time_zone)(data)


def detect_format(data: bytes) -> str:
    """Name the format ("camt.053", "ofx", "mt940" or "csv") from the file's first bytes."""
    head = data[:4096]
    if _ISO20022.search(head) or _XML_DOCUMENT.match(head):
        # camt.052 and camt.054 land here too and get a precise rejection.
        return "camt.053"
    if _OFX.search(head):
        return "ofx"
    if _MT940.search(head.replace(b"\r\n", b"\n")):
        return "mt940"
    if head.strip() and b"\x00" not in head and not head.startswith(b"%PDF"):
        return "csv"
    raise StatementError(
        "unknown_format",
        "the file is neither camt.053 XML, OFX, MT940 nor CSV; check that it is the statement "
        "export and not, for example, a PDF.",
    )


def _named(format: str) -> str:
    name = _ALIASES.get(format.strip().lower())
    if name is None:
        raise StatementError(
            "unknown_format",
            f"unknown statement format {format!r}; use one of camt.053, ofx, mt940 or csv.",
        )
    return name


def _reader(name: str, csv_mapping: CsvMapping | None, time_zone: tzinfo) -> _Reader:
    if name == "camt.053":
        return lambda data: read_camt053(data, time_zone)
    if name == "ofx":
        return read_ofx
    if name == "mt940":
        return read_mt940
    if csv_mapping is None:
        raise StatementError(
            "unknown_format",
            "this looks like a CSV file; CSV layouts differ per bank, so pass the saved "
            "column mapping for this bank's export.",
        )
    mapping = csv_mapping
    return lambda data: read_csv(data, mapping)
