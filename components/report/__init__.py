"""The run report: an HTML page with PNG plots comparing every architecture of a run.

- :mod:`components.report.scores` — recall, F1 and macro-F1 from a confusion matrix.
- :mod:`components.report.render` — draws the PNGs and writes ``index.html`` from plain data.
- :mod:`components.report.component` — the TFX ``Report`` component that gathers that data
  from the run's artifacts.
"""
