"""Load a study's answers into pandas: from an export file (CSV or Parquet) or the database.

Both paths end in :func:`normalize`, so a frame read back from a CSV, from a Parquet file or
straight from the database has the same columns and dtypes:

- text columns (``study, participant, method, options, ...``): pandas' string dtype ``str``;
  an empty string is missing (NaN), as a CSV reads it back, so the database, CSV and Parquet
  agree (e.g. the empty provenance of a photo);
- ``position``: ``int64`` (a row without a position is an error);
- ``is_attention_check``: ``bool`` (a row without it is an error);
- ``correct``: nullable ``boolean`` (empty for trust trials);
- ``answer``: ``Int64`` for trust (-2..2), ``str`` for class discrimination (a category);
- ``score_stronger``: ``Int64`` (empty for trust attention checks);
- ``rt_ms``: ``float64``;
- ``shown_at, answered_at``: ``datetime64[us, UTC]`` (``shown_at`` may be NaT);
- the participant's columns where the export has them (``study.export.PARTICIPANT_COLUMNS``):
  ``time_on_task_s, hidden_s`` ``float64``, ``blur_events, focus_events, hidden_events``
  ``Int64``, the ``questionnaire_*`` columns text.

The study kind is read from the ``study_kind`` column; the required columns are exactly those
of :func:`study.export.columns` for that kind (``worker_id``, written only with ``--raw-ids``,
is optional, and so are the participant's columns, which exports before them lack: a frame
without them is loaded without them). Every problem a user can cause (no such file, an unknown suffix, missing columns,
no rows, values that do not parse) is a :class:`camstudy.errors.UserError` with a one-line
message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.kinds import kind_from_columns, score_columns
from camstudy.errors import UserError
from camstudy.kinds import KINDS as STUDY_KINDS
from camstudy.kinds import Outcome, kind_of
from study.export import ESCAPE, EVENT_COUNTS, columns

KINDS = tuple(STUDY_KINDS)
BOOL_TEXT = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
DATETIME_COLUMNS = ("shown_at", "answered_at")
DATETIME_DTYPE = "datetime64[us, UTC]"
SECONDS_COLUMNS = ("time_on_task_s", "hidden_s")


def load_export(path: str | Path) -> pd.DataFrame:
    """Read an export written by ``camstudy export`` (``.csv`` or ``.parquet``/``.pq``).

    The format is chosen by the file's suffix. CSV cells are read as text and then converted
    column by column (so a pseudonym of digits stays text, and an empty cell is missing).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UserError(f"{path}: an export must end in .csv or .parquet, not {suffix or '(no suffix)'!r}")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], engine="pyarrow")
        else:
            df = pd.read_parquet(path, engine="pyarrow")
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: no answers (the file is empty)") from None
    except (ValueError, OSError) as e:  # pyarrow's ArrowInvalid is a ValueError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable {suffix[1:]} file ({first})") from None
    if suffix == ".csv":
        df = unescape_text(df)
    return normalize(df, source=str(path))


def unescape_text(df: pd.DataFrame) -> pd.DataFrame:
    """Undo the export's spreadsheet-formula escape (``study.export.neutralise``): drop the
    one ``'`` it put in front of a text cell."""
    out = df.copy(deep=False)
    for c in out.columns:
        s = out[c]
        if not (pd.api.types.is_string_dtype(s) or s.dtype == object):
            continue
        escaped = s.str.startswith(ESCAPE, na=False)
        if escaped.any():
            out[c] = s.mask(escaped, s.str.slice(1))
    return out


def load_study(db_url: str | None, slug: str, mode: str | None = "live") -> pd.DataFrame:
    """Read study ``slug``'s answers straight from the database at ``db_url``.

    ``mode``: live (the default: analyses are of real participants), sandbox, debug, or
    None / "all". ``db_url`` None means the configured default (``CAMSTUDY_DB``). A database
    that is not at the migrations' head, or a study that does not exist, is a UserError.
    """
    from study.db import check_current, make_engine, session_factory
    from study.export import export_rows

    engine = make_engine(db_url)
    try:
        check_current(engine)
        with session_factory(engine)() as session:
            df = export_rows(session, slug, mode=mode)
    finally:
        engine.dispose()
    return normalize(df, source=f"study {slug!r} (mode {mode or 'all'})")


def study_kind(df: pd.DataFrame, source: str = "the answers") -> str:
    """The one study kind of ``df`` (its ``study_kind`` column, or the columns it has)."""
    if "study_kind" in df.columns:
        kinds = sorted(df["study_kind"].dropna().astype(str).unique())
        if len(kinds) > 1:
            raise UserError(f"{source}: answers of several study kinds ({', '.join(kinds)}); load one study at a time")
        if kinds:
            if kinds[0] not in KINDS:
                raise UserError(f"{source}: unknown study_kind {kinds[0]!r} (expected {' or '.join(KINDS)})")
            return kinds[0]
    return kind_from_columns(df.columns)


def required_columns(kind: str) -> list[str]:
    """The columns an export of ``kind`` must have (``worker_id`` is optional)."""
    return columns(kind, raw_ids=False)


def normalize(df: pd.DataFrame, source: str = "the answers") -> pd.DataFrame:
    """Check the columns of an export and give every column its dtype (see the module doc).

    Columns beyond the export's are kept as they are; the export's columns come first.
    """
    kind = study_kind(df, source)
    need = required_columns(kind)
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise UserError(
            f"{source}: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (a {kind} export has {len(need)} columns)"
        )
    if len(df) == 0:
        raise UserError(f"{source}: no answers")
    out = df.copy(deep=False)  # columns are replaced, never written into
    analysis = kind_of(kind).analysis
    text = set(out.columns) - {
        "position",
        "is_attention_check",
        "correct",
        "answer",
        *score_columns(),
        "rt_ms",
        *DATETIME_COLUMNS,
        *SECONDS_COLUMNS,
        *EVENT_COUNTS,
    }
    if analysis.outcome is Outcome.ACCURACY:  # the answer is an option's text
        text.add("answer")
    for c in text:
        s = out[c] if out[c].dtype == "str" else out[c].astype("str")
        empty = s == ""
        out[c] = s.mask(empty) if empty.any() else s
    out["position"] = _integers(out["position"], "position", source, nullable=False)
    out["is_attention_check"] = _booleans(out["is_attention_check"], "is_attention_check", source, nullable=False)
    out["correct"] = _booleans(out["correct"], "correct", source, nullable=True)
    if analysis.outcome is Outcome.SCALE:  # the answer and its score are points on the scale
        out["answer"] = _integers(out["answer"], "answer", source, nullable=True)
        if analysis.score_column:
            out[analysis.score_column] = _integers(
                out[analysis.score_column], analysis.score_column, source, nullable=True
            )
    out["rt_ms"] = _numbers(out["rt_ms"], "rt_ms", source)
    for c in DATETIME_COLUMNS:
        out[c] = _datetimes(out[c], c, source)
    for c in SECONDS_COLUMNS:
        if c in out.columns:
            out[c] = _numbers(out[c], c, source)
    for c in EVENT_COUNTS:
        if c in out.columns:
            out[c] = _integers(out[c], c, source, nullable=True)
    order = [c for c in columns(kind, raw_ids="worker_id" in out.columns)] + [
        c for c in out.columns if c not in columns(kind, raw_ids=True)
    ]
    return out[order].reset_index(drop=True)


def _bad(source: str, column: str, values: pd.Series) -> UserError:
    shown = ", ".join(repr(v) for v in values.astype(str).unique()[:3])
    return UserError(f"{source}: column {column} has values that do not parse: {shown}")


def _arrow_strings(s: pd.Series):
    """The pyarrow array behind a pandas string Series (a CSV column as read), else None."""
    if not isinstance(s.dtype, pd.StringDtype) or s.dtype.storage != "pyarrow":
        return None
    import pyarrow as pa

    try:
        return pa.array(s.array)
    except (TypeError, ValueError, pa.ArrowException):
        return None


def _fast_numbers(s: pd.Series) -> pd.Series | None:
    """``pd.to_numeric`` of a column of decimal strings by pyarrow's parser, or None where
    that might not give the same numbers or the same errors (then the pandas route runs).

    Both parsers round a decimal string correctly to the nearest double; pyarrow rejects
    whatever it does not parse (spaces, hex, ...), and a NaN or infinite result, a negative
    zero or an integer beyond 2^53 (which pandas would parse as an integer first) falls back.
    """
    arr = _arrow_strings(s)
    if arr is None:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowException, ValueError):
        return None
    v = values[pc.is_valid(arr).to_numpy(zero_copy_only=False)]
    if not np.isfinite(v).all() or (np.abs(v) >= 2.0**53).any() or ((v == 0) & np.signbit(v)).any():
        return None
    return pd.Series(values, index=s.index, dtype="float64")


def _numbers(s: pd.Series, column: str, source: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.astype("float64")
    fast = _fast_numbers(s)
    if fast is not None:
        return fast
    num = pd.to_numeric(s, errors="coerce")
    bad = num.isna() & s.notna()
    if bad.any():
        raise _bad(source, column, s[bad])
    return num.astype("float64")


def _integers(s: pd.Series, column: str, source: str, nullable: bool) -> pd.Series:
    num = _numbers(s, column, source)
    frac = num.notna() & (num != num.round())
    if frac.any():
        raise _bad(source, column, s[frac])
    if not nullable:
        if num.isna().any():
            raise UserError(f"{source}: column {column} has {int(num.isna().sum())} empty cells")
        return num.astype("int64")
    return num.astype("Int64")


def _booleans(s: pd.Series, column: str, source: str, nullable: bool) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        out = s.astype("boolean")
    else:
        # The mapping is per value: map the few distinct values, then spread them by code
        # (code -1, a missing cell, maps to missing through the appended last entry).
        codes, uniques = pd.factorize(s)
        known = pd.Series(uniques).astype("str").str.strip().str.lower().map(BOOL_TEXT)
        valid = np.append(known.notna().to_numpy(), False)[codes]
        bad = ~valid & (codes >= 0)
        if bad.any():
            raise _bad(source, column, s[bad])
        value = np.append(known.fillna(False).to_numpy(dtype=bool), False)[codes]
        out = pd.Series(pd.arrays.BooleanArray(value, ~valid), index=s.index)
    if not nullable:
        if out.isna().any():
            raise UserError(f"{source}: column {column} has {int(out.isna().sum())} empty cells")
        return out.astype(bool)
    return out


def _datetimes(s: pd.Series, column: str, source: str) -> pd.Series:
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s):
        t = s.dt.tz_localize("UTC") if getattr(s.dt, "tz", None) is None else s.dt.tz_convert("UTC")
        return t.astype(DATETIME_DTYPE)
    fast = _fast_datetimes(s)
    if fast is not None:
        return fast
    try:
        t = pd.to_datetime(s, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        bad = pd.to_datetime(s, utc=True, format="ISO8601", errors="coerce").isna() & s.notna()
        raise _bad(source, column, s[bad]) from None
    return t.astype(DATETIME_DTYPE)


def _fast_datetimes(s: pd.Series) -> pd.Series | None:
    """ISO 8601 text with a UTC offset (what the export writes) parsed by pyarrow, or None
    (then ``pd.to_datetime(format="ISO8601")`` runs). pyarrow's parser is the stricter of
    the two: it takes full date-times with an offset or "Z" and at most microseconds, which
    pandas reads to the same instant, and rejects the rest (no offset, a date alone,
    nanoseconds, spaces, ...), which pandas then reads or reports as before."""
    arr = _arrow_strings(s)
    if arr is None:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        t = pc.cast(arr, pa.timestamp("us", tz="UTC"))
    except (pa.ArrowException, ValueError):
        return None
    stamps = pc.fill_null(t.cast(pa.int64()), 0).to_numpy(zero_copy_only=False).astype("datetime64[us]")
    stamps[pc.is_null(arr).to_numpy(zero_copy_only=False)] = np.datetime64("NaT")
    return pd.Series(pd.DatetimeIndex(stamps).tz_localize("UTC"), index=s.index).astype(DATETIME_DTYPE)
