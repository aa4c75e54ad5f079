"""Dump the catalog as JSON, CSV or SQL, with rows in primary-key order so dumps diff cleanly.

Binary columns (a picture's PNG, ``images.png``) are written as sqlite-utils and datasette write them: in JSON
as ``{"$base64": true, "encoded": "..."}`` (which ``sqlite-utils insert`` reads back as bytes), in CSV as the
bare base64 text, and in SQL as an ``X'...'`` literal, which rebuilds them byte for byte.
"""

from __future__ import annotations

import base64
import csv
import io

from circuits.catalog import schema
from circuits.catalog.store import decode
from circuits.errors import UsageError

FORMATS = ("json", "csv", "sql")


def table_rows(store, table: str) -> list[dict]:
    if table not in schema.TABLES:
        raise UsageError(f"unknown table {table!r}; choose one of {', '.join(schema.TABLES)}.")
    return list(store.table(table).rows_where(order_by=", ".join(schema.TABLES[table])))


# JSON-text columns to decode beyond store.decode's defaults (a circuit's ``method`` is a plain string)
_JSON_COLUMNS = {"neuron_images": ("method",)}


def export_json(store) -> dict:
    """``{"catalog_schema_version": N, "tables": {table: [rows]}}`` with JSON columns decoded and binary ones
    as ``{"$base64": true, "encoded": ...}``: every value is plain JSON."""
    tables = {}
    for t in schema.TABLES:
        columns = _JSON_COLUMNS.get(t)
        rows = (decode(r) if columns is None else decode(r, columns) for r in table_rows(store, t))
        tables[t] = [{k: _json_binary(v) for k, v in r.items()} for r in rows]
    return {"catalog_schema_version": store.value("SELECT max(version) FROM schema_version"), "tables": tables}


def _json_binary(value):
    """Bytes as sqlite-utils' (and datasette's) JSON spelling of a BLOB; anything else as it is."""
    if isinstance(value, bytes):
        return {"$base64": True, "encoded": base64.b64encode(value).decode("ascii")}
    return value


def export_csv(store, table: str) -> str:
    rows = table_rows(store, table)
    columns = [column.name for column in store.table(table).columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for k, v in r.items()}
                     for r in rows)  # fmt: skip
    return out.getvalue()


def export_sql(store) -> str:
    """A script that rebuilds this catalog in an empty file: ``sqlite3 new.db < dump.sql``."""
    lines = [f"PRAGMA application_id = {schema.APPLICATION_ID};", "BEGIN;"]
    lines.extend(f"{sql};" for sql in schema_sql(store))
    for table in ("schema_version", *schema.TABLES):
        columns = [column.name for column in store.table(table).columns]
        values = " || ',' || ".join(_literal(c) for c in columns)
        order = ", ".join(schema.TABLES.get(table, ("version",)))
        sql = f"SELECT 'INSERT INTO {table} VALUES (' || {values} || ');' FROM {table} ORDER BY {order}"
        lines.extend(row[0] for row in store.db.execute(sql))
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def _literal(column: str) -> str:
    """SQL that spells a column's value as a literal; quote() would cut text at a NUL, so such text is
    written as the hex of its bytes, cast back to text."""
    return (f"CASE WHEN typeof({column}) = 'text' AND instr(CAST({column} AS BLOB), X'00') > 0 "
            f"THEN 'CAST(X''' || hex({column}) || ''' AS TEXT)' ELSE quote({column}) END")


def schema_sql(store) -> list[str]:
    """The file's own CREATE statements in the order they were made; FTS5 virtual tables make their shadow tables."""
    shadows = tuple(f"{name}_" for name in store.db.table_names(fts5=True))
    return [sql for name, sql in store.db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
            if not name.startswith(shadows)]
