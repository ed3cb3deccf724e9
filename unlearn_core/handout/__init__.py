"""A report to take away: one self-contained HTML file for a set of runs (``python -m unlearn_core report``).

- :func:`select_runs` picks the runs (ids, a tag or a sweep) from a run store;
- :func:`build_handout` computes the tables and figures and returns the page;
- :func:`write_handout` writes it (output path checked like every output);
- :mod:`.recipe` gives the commands, hashes and versions that reproduce the runs.
"""

from unlearn_core.handout.page import SECTIONS, build_handout, write_handout
from unlearn_core.handout.recipe import run_command, sweep_command
from unlearn_core.handout.selection import HandoutError, Selection, parse_run_ids, select_runs

__all__ = ["SECTIONS", "HandoutError", "Selection", "build_handout", "parse_run_ids", "run_command",
           "select_runs", "sweep_command", "write_handout"]
