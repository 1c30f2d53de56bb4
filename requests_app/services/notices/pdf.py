"""A notice as a printable letter (PDF, with fpdf2): the company's return address
(LETTER_RETURN_ADDRESS), the requester's name and postal address where a window
envelope shows them, the date, the reference, the notice's subject and its text as
the email would have said it (the same template)."""

import datetime
import re
from pathlib import Path

from django.conf import settings
from fpdf import FPDF

FAMILY = "Letter"
# Drawn within 210 x 279 mm, so that it prints on A4 and on US Letter alike.
PAGE = "A4"
MARGIN = 20
NEXT_LINE = {"new_x": "LMARGIN", "new_y": "NEXT"}  # after a cell, the next line
DEFAULT_RETURN_ADDRESS = "Privacy Office"  # settings.LETTER_RETURN_ADDRESS unset


def return_address() -> list[str]:
    return [line.strip() for line in re.split(r"\s*[|\n]\s*", settings.LETTER_RETURN_ADDRESS)
            if line.strip()]


def _font(pdf: FPDF) -> tuple[str, bool]:
    """(the font family, whether it writes any Unicode): LETTER_FONT when the file
    is there, else the core font Helvetica (Latin-1 only)."""
    path = Path(settings.LETTER_FONT)
    if path.is_file():
        pdf.add_font(FAMILY, "", str(path))
        return FAMILY, True
    return "Helvetica", False


def letter_pdf(*, address: str, reference: str, subject: str, body: str,
               date: datetime.date) -> bytes:
    pdf = FPDF(format=PAGE)
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.set_auto_page_break(True, margin=MARGIN + 4)
    family, unicode_ok = _font(pdf)

    def printable(value: str) -> str:
        return value if unicode_ok else value.encode("latin-1", "replace").decode("latin-1")

    pdf.set_title(printable(f"{subject} ({reference})"))
    pdf.add_page()
    pdf.set_font(family, size=8)
    pdf.multi_cell(0, 4, printable("\n".join(return_address())), align="L", **NEXT_LINE)
    pdf.set_y(max(pdf.get_y() + 4, 45))  # the window of a DL / No. 10 envelope
    pdf.set_font(family, size=11)
    pdf.multi_cell(95, 5, printable(address), align="L", **NEXT_LINE)
    pdf.set_y(max(pdf.get_y() + 8, 90))
    pdf.cell(0, 5, printable(date.strftime("%B %-d, %Y")), align="R", **NEXT_LINE)
    pdf.cell(0, 5, printable(f"Reference: {reference}"), **NEXT_LINE)
    pdf.ln(4)
    pdf.set_font(family, size=13)
    pdf.multi_cell(0, 6, printable(subject), align="L", **NEXT_LINE)
    pdf.ln(3)
    pdf.set_font(family, size=11)
    pdf.multi_cell(0, 5, printable(body.strip()), align="L", **NEXT_LINE)
    return bytes(pdf.output())
