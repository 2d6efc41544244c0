"""A result as a file to attach: xlsx with typed cells, or UTF-8 csv (with a BOM, for Excel) in a zip.

The rows are untrusted data sent to people who open them in a spreadsheet: no cell may become a
formula (text cells are typed as text in xlsx; a csv cell that starts like a formula gets a leading
`'`, as OWASP's "CSV Injection" page advises), and control characters that xlsx cannot hold are
replaced by U+FFFD rather than failing the file.

Both are byte-identical for the same rows and fire time: every zip entry and the workbook's
properties carry the fire time, never the clock. A retried run thus resends identical content.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

MAX_FILE_BYTES = 10 * 1024 * 1024  # a file *message* may reference at most 10 MB [upload-media-files]
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?\Z")
_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})\Z")
# Excel's number formats for a column's kind (reports.yaml `formats`, else inferred as the message does)
NUMBER_FORMATS = {"currency": "#,##0.00", "percent": "0.00%", "integer": "#,##0"}
MAX_WIDTH = 60  # characters; a long text column should not push the rest off screen
# XML 1.0 cannot hold C0 controls (tab, LF and CR aside), surrogates, U+FFFE and U+FFFF; C1 controls
# and DEL it can, but they are never data either.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# What spreadsheets read as the start of a formula; full-width signs too, which CJK Excel accepts.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")  # "-5" cannot be a formula


@dataclass(frozen=True)
class Attachment:
    name: str
    data: bytes

    @property
    def too_large(self) -> bool:
        return len(self.data) > MAX_FILE_BYTES


def build_attachment(
    df: pd.DataFrame, fmt: str, name: str, fire_time: datetime,
    labels: Mapping[str, str] | None = None, formats: Mapping[str, str] | None = None,
    zone: tzinfo | None = None,
) -> Attachment:  # fmt: skip
    """The file; `labels`, `formats` and `zone` are the report's, so the file reads as the message does."""
    if fmt == "csv":
        labelled = df.set_axis([(labels or {}).get(str(c), str(c)) for c in df.columns], axis=1)
        return Attachment(name, csv_zip(labelled, name.removesuffix(".zip") + ".csv", fire_time))
    return Attachment(name, xlsx(df, fire_time, labels or {}, formats or {}, zone))


def clean_text(text: str) -> str:
    """`text` with the control characters no spreadsheet file should hold replaced by U+FFFD."""
    return _CONTROL.sub("\ufffd", text)


def formula_like(text: str) -> bool:
    """Whether a spreadsheet could take `text`, typed into a cell, for a formula."""
    return text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(text)


def csv_zip(df: pd.DataFrame, inner: str, fire_time: datetime) -> bytes:
    text = csv_safe(df).to_csv(index=False, lineterminator="\r\n")
    return _zip([(inner, b"\xef\xbb\xbf" + text.encode("utf-8"))], fire_time)


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """The frame with every text cell (and column name) cleaned, and quoted when formula-like."""
    import pandas as pd

    out = df.copy(deep=False)
    out.columns = pd.Index([_csv_text(str(c)) for c in df.columns], dtype=object)
    for j in range(df.shape[1]):
        column = df.iloc[:, j]
        if pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype):
            out.isetitem(j, column.astype(object).map(_csv_cell, na_action="ignore").to_numpy(dtype=object))
    return out


def _csv_cell(value: Any) -> Any:
    if isinstance(value, bool | int | float | Decimal | date):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value
    return _csv_text(value if isinstance(value, str) else str(value))


def _csv_text(text: str) -> str:
    text = clean_text(text)
    return "'" + text if formula_like(text) else text


def xlsx(
    df: pd.DataFrame, fire_time: datetime, labels: Mapping[str, str] | None = None,
    formats: Mapping[str, str] | None = None, zone: tzinfo | None = None,
) -> bytes:  # fmt: skip
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.writer.excel import ExcelWriter

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "data"
    zone = zone or fire_time.tzinfo
    ws.append(_cells(ws, [(labels or {}).get(str(c), str(c)) for c in df.columns], Font(bold=True)))
    number_formats = column_number_formats(df, formats or {})
    for row in with_dates(df, zone).itertuples(index=False, name=None):
        cells = _cells(ws, [cell_value(v, zone) for v in row])
        for cell, number_format in zip(cells, number_formats, strict=True):
            if number_format and cell.data_type == "n" and cell.value is not None:
                cell.number_format = number_format
        ws.append(cells)
    ws.freeze_panes = "A2"
    _fit_widths(ws, df)
    wb.properties.created = wb.properties.modified = _utc_naive(fire_time)
    wb.properties.creator = "dispatcher"
    raw = io.BytesIO()
    # ExcelWriter, not wb.save(): save() stamps `modified` with the clock.
    ExcelWriter(wb, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED)).save()
    return _rezip(raw.getvalue(), fire_time)


def column_number_formats(df: pd.DataFrame, formats: Mapping[str, str]) -> list[str | None]:
    """Each column's Excel number format: its kind as the message shows it, decimals included."""
    from dispatcher.render.format import infer_kind, money_digits

    out: list[str | None] = []
    for j, name in enumerate(map(str, df.columns)):
        series = df.iloc[:, j]
        kind = formats.get(name) or infer_kind(series)
        if kind == "number":
            out.append("#,##0.00" if money_digits(series.tolist()) else "#,##0")
        else:
            out.append(NUMBER_FORMATS.get(kind))
    return out


def with_dates(df: pd.DataFrame, zone: tzinfo | None = None) -> pd.DataFrame:
    """Text columns holding only ISO dates or times (SQLite has no date type) become dates; times
    with an offset (`Z`, `+08:00`) are shown in `zone`, the report's."""
    import pandas as pd

    out = df.copy(deep=False)
    for j in range(df.shape[1]):
        column = df.iloc[:, j]
        values = column.dropna()
        textual = pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype)
        if not textual or values.empty:
            continue
        if all(isinstance(v, str) and _ISO.match(v) for v in values):
            if any(_OFFSET.search(v) for v in values):
                parsed = pd.to_datetime(column, errors="coerce", format="ISO8601", utc=True)
                parsed = parsed.dt.tz_convert(zone).dt.tz_localize(None)
            else:
                parsed = pd.to_datetime(column, errors="coerce", format="ISO8601")
            dated = parsed.dt.date if all(len(v) == 10 for v in values) else parsed
            out.isetitem(j, dated.astype(object).where(column.notna(), None).to_numpy(dtype=object))
    return out


def _cells(ws: Any, values: list[Any], font: Any = None) -> list[Any]:
    """One row's cells; text is typed as text, which openpyxl would otherwise take for a formula
    when it starts with "=", and formula-like text carries Excel's quote prefix so editing keeps it text."""
    from openpyxl.cell.cell import Cell

    cells = []
    for value in values:
        text = clean_text(value) if isinstance(value, str) else None
        cell = Cell(ws, value=text if text is not None else value)
        if text is not None:
            cell.data_type = "s"
            if formula_like(text):
                cell.quotePrefix = True
        if font is not None:
            cell.font = font
        cells.append(cell)
    return cells


def cell_value(value: Any, zone: tzinfo | None = None) -> Any:
    """A cell as Excel should type it: numbers stay numbers, dates dates (an aware time in `zone`,
    as Excel has no time zones), missing values empty."""
    import pandas as pd

    if value is None or (not isinstance(value, str | bytes) and bool(pd.isna(value))):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        if value.tzinfo is not None and zone is not None:
            value = value.astimezone(zone)
        return value.replace(tzinfo=None)
    if isinstance(value, Decimal):
        value = float(value)
    elif hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # an xlsx number cannot be infinite: Excel would call the file corrupt
    if isinstance(value, date | bool | int | float | str):
        return value
    return str(value)


def _fit_widths(ws: Any, df: pd.DataFrame) -> None:
    from openpyxl.utils import get_column_letter

    for j, column in enumerate(df.columns, start=1):
        sample = [str(column), *(str(v) for v in df.iloc[:200, j - 1])]
        widest = max(sum(2 if ord(ch) > 0x2E7F else 1 for ch in text) for text in sample)
        ws.column_dimensions[get_column_letter(j)].width = min(MAX_WIDTH, widest + 2)


def _utc_naive(at: datetime) -> datetime:
    from datetime import UTC

    return at.astimezone(UTC).replace(tzinfo=None)


def _zip_time(at: datetime) -> tuple[int, int, int, int, int, int]:
    # zip stores local wall time in 2-second steps, and no year before 1980
    return (max(at.year, 1980), at.month, at.day, at.hour, at.minute, at.second - at.second % 2)


def _zip(entries: list[tuple[str, bytes]], fire_time: datetime) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_zip_time(fire_time))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            if not name.isascii():
                info.flag_bits |= 0x800  # the name is UTF-8, so unzip tools show the Chinese name
            archive.writestr(info, data)
    return out.getvalue()


def _rezip(raw: bytes, fire_time: datetime) -> bytes:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        entries = [(info.filename, archive.read(info)) for info in archive.infolist()]
    return _zip(entries, fire_time)
