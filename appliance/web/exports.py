"""CSV exports (door log, audit log): one writer, safe to open in a spreadsheet.

A cell starting with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return) would be run as a
formula by spreadsheet programs (CSV injection), so such a cell gets a leading apostrophe.
Nested values (event details) are written as compact JSON.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi.responses import Response

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_TYPE = "text/csv; charset=utf-8"


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return out.getvalue()


def csv_response(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], filename: str) -> Response:
    return Response(csv_text(rows, columns), media_type=CSV_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
