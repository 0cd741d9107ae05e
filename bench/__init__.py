"""Benchmark scripts (``python -m bench.<name>``; ``make bench`` runs them all).

Each prints a markdown table and appends its figures, with the command, the machine and
the date, to ``docs/bench_results.jsonl``. They are measurements, not tests.
"""
