"""Reads a medvault export with pyarrow (Parquet and Arrow IPC), polars and DuckDB, and checks
k-anonymity, l-diversity and the absence of identifiers independently of the Rust code.

usage: read_export.py DIR TABLES K L [FORBIDDEN ...]   (prints one JSON object)
"""
import json
import sys
from pathlib import Path

import duckdb
import polars
import pyarrow.feather
import pyarrow.parquet


def main() -> None:
    directory, tables, k, l = Path(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4])
    forbidden = sys.argv[5:]
    database = duckdb.connect()
    report = {}
    found = set()
    for table in tables:
        parquet = directory / f"{table}.parquet"
        ipc = directory / f"{table}.arrow"
        arrow_table = pyarrow.parquet.read_table(parquet)
        ipc_table = pyarrow.feather.read_table(ipc)
        frame = polars.read_parquet(parquet)
        duck_rows = database.execute(f"SELECT count(*) FROM read_parquet('{parquet}')").fetchone()[0]
        report[table] = {
            "pyarrow": {"rows": arrow_table.num_rows, "columns": arrow_table.column_names},
            "pyarrow_ipc": {"rows": ipc_table.num_rows},
            "polars": {"rows": frame.height},
            "duckdb": {"rows": duck_rows},
            "first_ids": sorted(arrow_table.column("person_id").to_pylist())[:5],
        }
        for column in arrow_table.column_names:
            for value in arrow_table.column(column).to_pylist():
                text = str(value)
                for needle in forbidden:
                    if needle in text:
                        found.add(needle)
        raw = ipc.read_bytes()
        for needle in forbidden:
            if needle.encode() in raw:
                found.add(needle)
    person = directory / "person.parquet"
    report["min_class_size"] = database.execute(
        f"SELECT min(n) FROM (SELECT count(*) AS n FROM read_parquet('{person}') GROUP BY birth, sex, zip3)"
    ).fetchone()[0]
    if l > 0:
        events = directory / f"{tables[1]}.parquet"
        report["min_distinct_sensitive"] = database.execute(
            f"""SELECT min(d) FROM (
                  SELECT count(DISTINCT e.code_system || ':' || e.code) AS d
                  FROM read_parquet('{person}') p JOIN read_parquet('{events}') e USING (person_id)
                  GROUP BY p.birth, p.sex, p.zip3)"""
        ).fetchone()[0]
    report["forbidden_found"] = sorted(found)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
