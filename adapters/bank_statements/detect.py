"""One entry point: bytes in, statements out, whatever the bank sent."""

from __future__ import annotations

import re
from collections.abc import Callable

from .camt053 import read_camt053
from .csv_mapping import CsvMapping, read_csv
from .model import Statement, StatementError
from .ofx import read_ofx

_Reader = Callable[[bytes], tuple[list[Statement], list[StatementError]]]

_ALIASES = {
    "camt.053": "camt.053",
    "camt053": "camt.053",
    "camt": "camt.053",
    "ofx": "ofx",
    "qfx": "ofx",
    "csv": "csv",
}
_ISO20022 = re.compile(rb"urn:iso:std:iso:20022:tech:xsd:camt\.")
_XML_DOCUMENT = re.compile(rb"^(\xef\xbb\xbf)?\s*(<\?xml[^>]*>\s*)?<Document[\s>]")
_OFX = re.compile(rb"OFXHEADER|<OFX>", re.IGNORECASE)


def parse_statement(
    data: bytes, format: str | None = None, csv_mapping: CsvMapping | None = None
) -> list[Statement]:
    """Parse and check a statement file; raise the first problem found."""
    statements, errors = read_statement(data, format, csv_mapping)
    if errors:
        raise errors[0]
    return statements


def read_statement(
    data: bytes, format: str | None = None, csv_mapping: CsvMapping | None = None
) -> tuple[list[Statement], list[StatementError]]:
    """Parse a statement file and return every problem it shows, as values."""
    return _reader(detect_format(data) if format is None else _named(format), csv_mapping)(data)


def detect_format(data: bytes) -> str:
    """Name the format ("camt.053", "ofx" or "csv") from the file's first bytes."""
    head = data[:4096]
    if _ISO20022.search(head) or _XML_DOCUMENT.match(head):
        # camt.052 and camt.054 land here too and get a precise rejection.
        return "camt.053"
    if _OFX.search(head):
        return "ofx"
    if head.strip() and b"\x00" not in head and not head.startswith(b"%PDF"):
        return "csv"
    raise StatementError(
        "unknown_format",
        "the file is neither camt.053 XML, OFX nor CSV; check that it is the statement "
        "export and not, for example, a PDF.",
    )


def _named(format: str) -> str:
    name = _ALIASES.get(format.strip().lower())
    if name is None:
        raise StatementError(
            "unknown_format",
            f"unknown statement format {format!r}; use one of camt.053, ofx or csv.",
        )
    return name


def _reader(name: str, csv_mapping: CsvMapping | None) -> _Reader:
    if name == "camt.053":
        return read_camt053
    if name == "ofx":
        return read_ofx
    if csv_mapping is None:
        raise StatementError(
            "unknown_format",
            "this looks like a CSV file; CSV layouts differ per bank, so pass the saved "
            "column mapping for this bank's export.",
        )
    mapping = csv_mapping
    return lambda data: read_csv(data, mapping)
