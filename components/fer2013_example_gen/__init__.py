"""fer2013 CSV ingestion: Fer2013ExampleGen (the row parser is fer_data/fer2013_csv.py)."""

from components.fer2013_example_gen.component import (  # noqa: F401
    Fer2013ExampleGen,
    QuarantinedRows,
    unassigned_rows_output_config,
)
