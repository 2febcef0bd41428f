"""`ringfleet preview`: what a change does to every env, as one Markdown report (docs/preview.md).

`report.preview()` exports the base (`revision.py`), records each revision with its own
code (`record.py`, or the frozen `record_flat.py` for old layouts) and writes the three
parts: `infra.py` (with `graph.py`), `software.py` (with `rolediff.py` and
`rolereport.py`) and `jobs.py`.
"""
