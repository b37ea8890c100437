"""Bank-statement parsers: camt.053, OFX, MT940 and mapped CSV, into plain records.

Pure functions over bytes, no database; reconciliation consumes the result.
Each format has `parse_*` (raises the first StatementError) and `read_*`
(returns the statements with every problem found, as values).
"""

from .camt053 import parse_camt053, read_camt053
from .csv_mapping import CsvMapping, parse_csv, read_csv
from .detect import detect_format, parse_statement, read_statement
from .model import ErrorCode, Statement, StatementError, StatementLine
from .ofx import parse_ofx, read_ofx
from .swift_mt940 import parse_mt940, read_mt940
from .validation import validate_statement

__all__ = [
    "CsvMapping",
    "ErrorCode",
    "Statement",
    "StatementError",
    "StatementLine",
    "detect_format",
    "parse_camt053",
    "parse_csv",
    "parse_mt940",
    "parse_ofx",
    "parse_statement",
    "read_camt053",
    "read_csv",
    "read_mt940",
    "read_ofx",
    "read_statement",
    "validate_statement",
]
