"""Deprecated location: the results schema and tables live in :mod:`calib.run.results`."""

from .run.results import (  # noqa: F401
    HEADERS,
    TABLE_COLUMNS,
    flatten_results,
    format_cell,
    format_table,
    markdown_table,
    result_rows,
    rows_to_csv,
    write_results,
)
