"""fer2013 CSV ingestion: Fer2013ExampleGen and its row parser."""

from components.fer2013_example_gen.component import (  # noqa: F401
    Fer2013ExampleGen,
    QuarantinedRows,
    unassigned_rows_output_config,
)
