"""One rule for every CSV the app writes: no cell may start a spreadsheet formula.

Why: a participant's comment ``=HYPERLINK("http://…")`` was exported as is, and a researcher opening the CSV
in Excel, LibreOffice or Google Sheets gets a live formula (a link that leaks data, or worse). Call
``formula_safe`` on every cell of a CSV export (the study export does; other exports should too).
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would read as a formula; else unchanged.

    Text starting with ``= + - @``, a tab or a carriage return gets the quote (OWASP's advice: spreadsheets
    show it as text and hide the quote). Numbers, ``None`` and text that is just a number ("-3", "-0.5") are
    left alone, so numeric columns stay numeric for analysis. The original text stays in JSON exports.
    """
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value
