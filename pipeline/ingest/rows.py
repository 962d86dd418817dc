"""Kaggle CSV files -> blocks of checked rows with parsed drawings, streaming and fast.

    for rows in read_rows(path, TRAIN_READ, word="cat", required=TRAIN_REQUIRED):
        rows.column("reason")  # (N,) 0 = usable, else a `pipeline.core.reasons.Reason`
        rows.points            # every row's drawing (no points where rejected)

Each block is `Drawings` with the columns `ROW_COLUMNS` names: key_id (-1 if bad), country,
recognized, reason, line (the file line the row starts on), key_text (the key_id as written,
for the rejects file) and normalised (raw-format drawings rescaled to 0..255).

A file is read in blocks of `BLOCK_BYTES`; the compiled kernels of `pipeline.ingest.scan` split each
block into records and fields and parse every drawing. Two rare cases take the careful road:
a record with odd quoting goes through Python's csv module (its fields are then checked by the
same kernel), and a drawing the strict grammar refuses goes to `parse_drawing_exact`, which
accepts it (stray whitespace, raw-format coordinates) or names the reason.

A UTF-8 BOM, CRLF line ends, blank lines, quoted newlines and any column order are fine. A row
with too few fields is `missing_field`, one with too many, or that not even the csv module can
split, `unparseable`; one with bytes that are not UTF-8 anywhere is `not_utf8`. Reason
precedence, first wins: unparseable (extra fields), missing_field (a required field empty, or
recognized not True/False), word_mismatch, bad_key_id (train rows; a test row keeps its drawing
and its key_id text), not_utf8, then the drawing's own (`pipeline.ingest.parse`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.common.errors import PipelineError
from pipeline.core.drawings import Drawings
from pipeline.core.layout import OPTIONAL_COLUMNS, TEST_COLUMNS, TRAIN_COLUMNS
from pipeline.core.reasons import Reason
from pipeline.ingest import scan
from pipeline.ingest.parse import settle_refused

BLOCK_BYTES = 1 << 22  # 4 MiB of CSV per block, about 8,000 simplified drawings
MAX_RECORDS = 1 << 16  # records per kernel call: bounds its arrays whatever the lines look like
MAX_HEADER_BYTES = 1 << 16
TRAIN_READ = tuple(c for c in TRAIN_COLUMNS if c not in OPTIONAL_COLUMNS)  # header must have
TEST_READ = TEST_COLUMNS
TRAIN_REQUIRED = ("drawing", "key_id", "word", "recognized")  # empty (or invalid) -> missing
TEST_REQUIRED = ("drawing",)  # a test row with a bad key_id is still answered (key_id -1)
ROW_COLUMNS = ("key_id", "country", "recognized", "reason", "line", "key_text", "normalised")
MISSING, WORD, KEY = Reason.MISSING_FIELD, Reason.WORD_MISMATCH, Reason.BAD_KEY_ID
NOT_UTF8 = Reason.NOT_UTF8
UNPARSEABLE = Reason.UNPARSEABLE
UNSPLITTABLE = -1  # n_fields of a record the csv module cannot split either: unparseable
_BOM = b"\xef\xbb\xbf"
_NEWLINE = ord("\n")
_NO_WORD = np.zeros(0, np.uint8)


def read_rows(
    path: Path,
    columns: tuple[str, ...],
    word: str = "",
    required: tuple[str, ...] = (),
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[Drawings]:
    """Blocks of rows of a CSV whose header names (at least) `columns`; see the module doc."""
    with open(path, "rb") as f:
        header, data, line = _header(path, f, block_bytes)
        if header is None:
            return
        missing = [c for c in columns if c not in header]
        if missing:
            raise PipelineError(
                f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}"
            )
        reader = _BlockReader(header, columns, word.encode("utf-8"), required)
        want, eof, read_more = block_bytes, False, True
        while True:
            if read_more and not eof:
                more = f.read(want)
                eof = not more
                data += more
            buf = np.frombuffer(data, np.uint8)
            n, consumed, lines_seen, *spans = scan.scan_csv(buf, eof, len(header), MAX_RECORDS)
            if n:
                yield reader.block(buf, line, *spans)
            line += lines_seen
            data = data[consumed:]
            read_more = n < MAX_RECORDS  # else the data holds more records: scan on first
            if read_more and eof:
                return
            # A record longer than the data read so far: read twice as much next time, so it
            # is scanned O(log n) times, not once per block.
            want = block_bytes if n else want * 2


def _header(path: Path, f: io.BufferedReader, block_bytes: int) -> tuple:
    """(header fields or None for an empty file, the bytes after it, the line after it)."""
    data, line = f.read(block_bytes), 1
    while len(data) < len(_BOM) and (more := f.read(block_bytes)):
        data += more
    data = data.removeprefix(_BOM)
    while True:
        while b"\n" not in data and len(data) <= MAX_HEADER_BYTES:
            more = f.read(block_bytes)
            if not more:
                break
            data += more
        head, sep, data = data.partition(b"\n")
        head = head.rstrip(b"\r")
        if head:
            try:
                fields = next(csv.reader([head[:MAX_HEADER_BYTES].decode("utf-8", "replace")]))
            except csv.Error as err:  # e.g. a file with old-Mac CR line ends: one endless line
                raise PipelineError(
                    f"{path}: cannot read the CSV header ({err}); save it as CSV with \\n or "
                    "\\r\\n line ends"
                ) from None
            return [h.strip() for h in fields], data, line + 1
        if not sep:
            return None, b"", line
        line += 1


class _BlockReader:
    def __init__(
        self, header: list[str], columns: tuple[str, ...], word: bytes, required: tuple[str, ...]
    ) -> None:
        self.width = len(header)
        index = {c: header.index(c) for c in columns}
        self.draw_col = index.get("drawing", -1)
        self.field_cols = np.array(
            [index.get(c, -1) for c in ("key_id", "countrycode", "recognized", "word")], np.int64
        )
        self.required_cols = [index[c] for c in required]
        self.recognized_required = "recognized" in required
        self.key_required = "key_id" in required  # test rows: a bad key_id is kept, not rejected
        self.word = np.frombuffer(word, np.uint8) if word else _NO_WORD

    def block(
        self,
        buf: np.ndarray,
        first_line: int,
        start: np.ndarray,
        end: np.ndarray,
        line: np.ndarray,
        n_fields: np.ndarray,
        status: np.ndarray,
        fstart: np.ndarray,
        fend: np.ndarray,
        by_lines: bool = True,
    ) -> Drawings:
        if (status == scan.ODD).any():  # odd quoting: the csv module splits those records
            buf, n_fields = self._reread(buf, start, end, n_fields, status, fstart, fend)
        n_fields = np.where(status == scan.BROKEN, UNSPLITTABLE, n_fields)
        key, recognized, word_ok, country = scan.parse_fields(
            buf, fstart, fend, self.field_cols, self.word, scan.TRUE_WORDS, scan.FALSE_WORDS
        )
        reason = np.zeros(len(key), np.uint8)
        reason[_not_utf8(buf, start, end)] = NOT_UTF8
        if self.key_required:
            reason[key < 0] = KEY
        reason[~word_ok] = WORD
        missing = n_fields < self.width
        for col in self.required_cols:
            missing |= fend[:, col] <= fstart[:, col]
        if self.recognized_required:
            missing |= recognized == -9
        reason[missing] = MISSING
        reason[(n_fields > self.width) | (n_fields == UNSPLITTABLE)] = UNPARSEABLE

        n = len(key)
        points, offsets = np.zeros((0, 3), np.uint8), np.zeros(n + 1, np.int64)
        normalised = np.zeros(n, np.bool_)
        if self.draw_col >= 0:
            points, offsets, normalised = self._drawings(buf, fstart, fend, reason)
        key_col = self.field_cols[0]
        key_text = np.full(n, "", dtype=object)
        for i in np.flatnonzero((reason != 0) | (key < 0)).tolist():
            if key_col >= 0 and n_fields[i] > key_col:
                key_text[i] = _printable(bytes(buf[fstart[i, key_col] : fend[i, key_col]]))
        rows = Drawings(
            points,
            offsets,
            key_id=key,
            country=country,
            recognized=recognized,
            reason=reason,
            line=first_line + line,
            key_text=key_text,
            normalised=normalised,
        )
        if not by_lines:
            return rows
        return self._reread_swallowing(buf, rows, start, end, status)

    def _reread_swallowing(
        self,
        buf: np.ndarray,
        rows: Drawings,
        start: np.ndarray,
        end: np.ndarray,
        status: np.ndarray,
    ) -> Drawings:
        """A bad row over several lines is most likely a closing quote gone missing (the drawing
        fields of Kaggle files never hold a newline): its lines are read again as rows of their
        own, so the rows it swallowed come back and only the broken one is rejected."""
        reason = rows.column("reason")
        swallowing = [
            i
            for i in np.flatnonzero((status == scan.ODD) & (reason != 0)).tolist()
            if _NEWLINE in buf[start[i] : end[i]]
        ]
        if not swallowing:
            return rows
        parts, prev = [], 0
        for i in swallowing:
            lines = np.ascontiguousarray(buf[start[i] : end[i]])
            _, _, _, *spans = scan.scan_csv(lines, True, self.width, MAX_RECORDS, False)
            first = int(rows.column("line")[i])
            parts += [rows.slice(prev, i), self.block(lines, first, *spans, by_lines=False)]
            prev = i + 1
        return Drawings.concat([*parts, rows.slice(prev, len(rows))])

    def _drawings(
        self, buf: np.ndarray, fstart: np.ndarray, fend: np.ndarray, reason: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Parse the drawing field of every row; rows already rejected get no points.

        Returns (points, offsets, normalised) and sets the drawing reasons in `reason`.
        """
        starts = np.ascontiguousarray(fstart[:, self.draw_col])
        ends = np.ascontiguousarray(fend[:, self.draw_col])
        ends = np.where(reason == 0, ends, starts)  # rejected rows: an empty span, no points
        accepted, points, offsets = scan.parse_drawings_at(buf, starts, ends)
        refused = np.flatnonzero(~accepted & (reason == 0)).tolist()
        return settle_refused(
            points, offsets, reason, refused, lambda i: bytes(buf[starts[i] : ends[i]])
        )

    def _reread(
        self,
        buf: np.ndarray,
        start: np.ndarray,
        end: np.ndarray,
        n_fields: np.ndarray,
        status: np.ndarray,
        fstart: np.ndarray,
        fend: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Split the ODD records with the csv module; their fields are appended to the buffer
        and their spans (in place) point there."""
        extra, size = [], len(buf)
        n_fields = n_fields.copy()
        for i in np.flatnonzero(status == scan.ODD).tolist():
            text = bytes(buf[start[i] : end[i]]).replace(b"\r\n", b"\n").decode("utf-8", "replace")
            fstart[i], fend[i] = 0, 0
            try:
                records = list(csv.reader(io.StringIO(text)))
            except csv.Error:  # e.g. a lone carriage return inside an unquoted field
                records = []
            if len(records) != 1:  # the kernel's record is not one csv record: refuse it whole
                n_fields[i] = UNSPLITTABLE
                continue
            fields = [v.encode("utf-8") for v in records[0]]
            n_fields[i] = len(fields)
            for f, value in enumerate(fields[: self.width]):
                fstart[i, f] = size
                fend[i, f] = size + len(value)
                extra.append(value)
                size += len(value)
        joined = np.frombuffer(buf.tobytes() + b"".join(extra), np.uint8)
        return joined, n_fields


def _not_utf8(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(N,) bool: records holding bytes that do not decode as UTF-8 (only the rare records with
    a byte >= 0x80 are decoded)."""
    bad = np.zeros(len(start), np.bool_)
    high = np.flatnonzero(buf[: int(end.max(initial=0))] >= 0x80)
    if len(high) == 0:
        return bad
    first = np.searchsorted(high, start)
    has_high = (first < len(high)) & (high[np.minimum(first, len(high) - 1)] < end)
    for i in np.flatnonzero(has_high).tolist():
        try:
            bytes(buf[start[i] : end[i]]).decode("utf-8")
        except UnicodeDecodeError:
            bad[i] = True
    return bad


def _printable(raw: bytes) -> str:
    """A field as text for the rejects file, control characters escaped: one row, one line."""
    text = raw.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
