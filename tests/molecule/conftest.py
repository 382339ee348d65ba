"""tests/molecule holds verifier tests shared by every Molecule scenario (each scenario's
tests/ links them). They need a scenario's hosts and run there, under `molecule verify`; a
plain `pytest` of tests/ collects nothing here."""

from __future__ import annotations

collect_ignore_glob = ["test_*.py"]
