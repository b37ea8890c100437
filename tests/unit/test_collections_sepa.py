"""SEPA Direct Debit files: pain.008.001.02/.08 written with sepaxml and valid against
the official XSD; pain.002 rejects and camt.054 returns read from real bank files."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from adapters.collections.sepa import (
    CollectionFileError,
    SepaCreditor,
    SepaDebit,
    SepaReturn,
    creditor_from_settings,
    parse_camt054_returns,
    parse_pain002,
    parse_sepa_returns,
    validate_pain008,
    write_pain008,
)

SEPA = Path("/work/shared/fixtures/third_party/sepa")
D = Decimal
CREDITOR = SepaCreditor("Active Billing GmbH", "DE89370400440532013000", "COBADEFFXXX",
                        "DE98ZZZ09999999999")  # fmt: skip


def _debit(n: int, amount: str, sequence: str = "RCUR") -> SepaDebit:
    return SepaDebit(
        end_to_end_id=f"INV-2026-{n:04d}",
        amount=D(amount),
        mandate_id=f"MANDATE-{n}",
        mandate_date=date(2025, 6, 1),
        sequence=sequence,  # type: ignore[arg-type]
        debtor_name="Müller & Söhne KG",
        debtor_iban="DE02120300000000202051",
        debtor_bic="BYLADEM1001",
        remittance=f"Invoice INV-2026-{n:04d}",
        collection_date=date(2026, 2, 5),
    )


def _find(root: ET.Element, path: str) -> list[str]:
    ns = {"p": root.tag[1:].partition("}")[0]}
    return [e.text or "" for e in root.findall(path, ns)]


@pytest.mark.parametrize("scheme", ["pain.008.001.02", "pain.008.001.08"])
def test_pain008_is_valid_against_the_xsd_and_carries_every_field(scheme: str) -> None:
    debits = [_debit(1, "108.00", "FRST"), _debit(2, "59.99"), _debit(3, "0.01")]
    xml = write_pain008(
        CREDITOR, debits, message_id="RUN-42", created_at=datetime(2026, 2, 1, 9, 30),
        scheme=scheme,
    )  # fmt: skip
    validate_pain008(xml, scheme)  # again, explicitly
    root = ET.fromstring(xml)
    assert root.tag == f"{{urn:iso:std:iso:20022:tech:xsd:{scheme}}}Document"
    g = ".//p:GrpHdr/"
    assert _find(root, g + "p:MsgId") == ["RUN-42"]
    assert _find(root, g + "p:CreDtTm") == ["2026-02-01T09:30:00"]
    assert _find(root, g + "p:NbOfTxs") == ["3"]
    assert _find(root, g + "p:CtrlSum") == ["168.00"]
    # one payment information per sequence type: FRST (108.00) and RCUR (60.00)
    assert sorted(_find(root, ".//p:PmtInf/p:PmtTpInf/p:SeqTp")) == ["FRST", "RCUR"]
    assert sorted(_find(root, ".//p:PmtInf/p:CtrlSum")) == ["108.00", "60.00"]
    assert sorted(_find(root, ".//p:PmtInf/p:PmtInfId")) == ["RUN-42-1", "RUN-42-2"]
    assert sorted(_find(root, ".//p:EndToEndId")) == ["INV-2026-0001", "INV-2026-0002",
                                                       "INV-2026-0003"]  # fmt: skip
    assert sorted(_find(root, ".//p:MndtId")) == ["MANDATE-1", "MANDATE-2", "MANDATE-3"]
    assert set(_find(root, ".//p:DtOfSgntr")) == {"2025-06-01"}
    assert set(_find(root, ".//p:ReqdColltnDt")) == {"2026-02-05"}
    assert _find(root, ".//p:CdtrSchmeId//p:Othr/p:Id") == ["DE98ZZZ09999999999"] * 2
    assert set(_find(root, ".//p:Dbtr/p:Nm")) == {"Muller & Sohne KG"}  # transliterated
    assert "Invoice INV-2026-0002" in _find(root, ".//p:RmtInf/p:Ustrd")
    # the same run writes the same file
    again = write_pain008(CREDITOR, debits, message_id="RUN-42",
                          created_at=datetime(2026, 2, 1, 9, 30), scheme=scheme)  # fmt: skip
    assert again == xml


def test_the_xsd_check_catches_a_broken_file() -> None:
    xml = write_pain008(CREDITOR, [_debit(1, "10.00")], message_id="M",
                        created_at=datetime(2026, 2, 1))  # fmt: skip
    broken = xml.replace(b"<SeqTp>RCUR</SeqTp>", b"<SeqTp>XXXX</SeqTp>")
    with pytest.raises(CollectionFileError):
        validate_pain008(broken, "pain.008.001.02")


@pytest.mark.parametrize(
    "debits",
    [
        [],
        [_debit(1, "10.001")],
        [_debit(1, "0")],
        [_debit(1, "10.00"), _debit(1, "20.00")],  # end-to-end id twice
        [_debit(1, "10.00", "NEXT")],
    ],
)
def test_bad_debits_are_refused(debits: list[SepaDebit]) -> None:
    with pytest.raises(CollectionFileError):
        write_pain008(CREDITOR, debits, message_id="M", created_at=datetime(2026, 2, 1))


def test_creditor_comes_from_the_book_setting() -> None:
    setting = {
        "sepa_creditor": {
            "name": "A",
            "iban": "DE89370400440532013000",
            "bic": "COBADEFFXXX",
            "creditor_id": "DE98ZZZ09999999999",
        }
    }
    assert creditor_from_settings(setting).creditor_id == "DE98ZZZ09999999999"
    with pytest.raises(CollectionFileError, match="sepa_creditor"):
        creditor_from_settings({})
    with pytest.raises(CollectionFileError, match="bic"):
        creditor_from_settings({"sepa_creditor": {"name": "A", "iban": "X", "creditor_id": "Y"}})


def test_pain002_transaction_rejects() -> None:
    found = parse_pain002((SEPA / "iso20022js__nordea_pain_002_v3_txn_reject.xml").read_bytes())
    assert [(r.end_to_end_id, r.reason, r.status) for r in found] == [
        ("ENDTOENDID-950-TEST2-2807-02", "NARR", "RJCT"),
        ("ENDTOENDID-950-TEST2-2807-01", "NARR", "RJCT"),
    ]
    assert found[0].additional_info is not None and found[0].additional_info.startswith("CAP")


def test_pain002_swiss_variant_with_ac01() -> None:
    data = (SEPA / "moov-iso20022__pain002-epo_p_ch2909000000250094239_1109800799_0_"
            "2018032612092784.xml").read_bytes()  # fmt: skip
    found = parse_sepa_returns(data)
    assert [(r.reason, r.status, r.message) for r in found] == [("AC01", "RJCT", "pain.002")]


def test_pain002_group_reject_is_a_stated_error() -> None:
    data = (SEPA / "iso20022js__nordea_pain_002_v3_group_reject.xml").read_bytes()
    with pytest.raises(CollectionFileError, match="DU01"):
        parse_pain002(data)


def test_camt054_return_with_reason_code() -> None:
    data = (SEPA / "moov-iso20022__camt054-returns_p_ch5109000000250092291_1110097606_0_"
            "2020112500512470.xml").read_bytes()  # fmt: skip
    assert parse_camt054_returns(data) == [
        SepaReturn("EndToEndId-001-03-04", D("500.00"), "CHF", "AC01", "RTRN", "camt.054",
                   "Kontonummer falsch"),
    ]  # fmt: skip


def test_camt054_md06_refunds_among_collections() -> None:
    found = parse_sepa_returns((SEPA / "camt_parser__054_valid_example.xml").read_bytes())
    assert len(found) == 2
    assert {r.reason for r in found} == {"MD06"}
    assert all(r.amount is not None and r.amount > 0 for r in found)


def test_camt054_without_returns_is_empty() -> None:
    data = (SEPA / "moov-iso20022__200519_camt054-ESR-ASR_P_CH2909000000250094239_1110092704_0_"
            "2019042500372179.xml").read_bytes()  # fmt: skip
    assert parse_sepa_returns(data) == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not xml",
        b"<Document><Other/></Document>",
        b'<!DOCTYPE x [<!ENTITY a "aaaa">]><Document>&a;</Document>',
        (SEPA / "sepa_king__pain.008.003.02.xml").read_bytes(),  # an initiation, not an answer
    ],
)
def test_malformed_or_unknown_answers_are_refused(data: bytes) -> None:
    with pytest.raises(CollectionFileError):
        parse_sepa_returns(data)


def test_a_return_without_end_to_end_id_is_refused() -> None:
    data = (SEPA / "moov-iso20022__camt054-returns_p_ch5109000000250092291_1110097606_0_"
            "2020112500512470.xml").read_bytes()  # fmt: skip
    broken = data.replace(b"<EndToEndId>EndToEndId-001-03-04</EndToEndId>", b"")
    with pytest.raises(CollectionFileError, match="end-to-end"):
        parse_camt054_returns(broken)
