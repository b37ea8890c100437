"""Invoice and credit-note PDFs, rendered by WeasyPrint from the same HTML the
document endpoints answer (adapters/invoice_document.py).

Why WeasyPrint: it lays out the HTML and CSS we already render (tables, the
PAID/VOID mark, right-aligned figures) instead of a second layout in code
(fpdf2, reportlab), and it shapes text with pango/harfbuzz and finds fonts
with fontconfig, so a Cyrillic, Greek or CJK customer name prints with
whatever font covers it (Debian: fonts-dejavu-core for Latin, Greek and
Cyrillic; fonts-wqy-microhei for CJK). xhtml2pdf, the pure-wheel option,
draws with reportlab's built-in Latin-1 fonts unless each font file is
registered by path, and does no complex-script shaping.

Its cost: Debian's pango (libpango-1.0-0, libpangoft2-1.0-0) must be on the
machine. Without it the import fails and the endpoint answers 503
`pdf_unavailable` naming the packages; the HTML document still works.
"""

from __future__ import annotations

from ledger.errors import LedgerError

__all__ = ["PRINT_STYLE", "PdfUnavailable", "html_to_pdf", "pdf_support"]

# Added for print only: an A4 page and fonts that cover non-Latin names first.
PRINT_STYLE = """
@page { size: A4; margin: 16mm 14mm; }
body { margin: 0; font-family: "DejaVu Sans", "WenQuanYi Micro Hei", "Noto Sans CJK SC",
       sans-serif; font-size: 10pt; }
"""


class PdfUnavailable(LedgerError):
    code = "pdf_unavailable"
    status = 503


def pdf_support() -> str | None:
    """None when PDFs can be rendered here, else why not."""
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as exc:  # OSError: pango's shared libraries are missing
        return (
            f"PDF rendering is not available on this server ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); install Debian's "
            "libpango-1.0-0 and libpangoft2-1.0-0 (and fonts-dejavu-core)"
        )
    return None


def html_to_pdf(html: str) -> bytes:
    why = pdf_support()
    if why is not None:
        raise PdfUnavailable(why)
    from weasyprint import CSS, HTML

    pdf = HTML(string=html).write_pdf(stylesheets=[CSS(string=PRINT_STYLE)])
    assert pdf is not None  # write_pdf without a target answers the bytes
    return bytes(pdf)
