"""The project's test helpers, in one place.

- `mlops_testkit.ansible`: run ansible-playbook (against any inventory, or the current Molecule
  scenario's) and read its play recap; read the tasks of a role.
- `mlops_testkit.testhosts`: start and remove systemd test host containers with the shared
  Molecule platform settings (.config/molecule/config.yml).
- `mlops_testkit.pytest_plugin`: the skip policy, loaded by every pytest run of this
  repository (pyproject.toml's addopts), Molecule verifiers included.

Importable as `mlops_testkit` from pytest (pyproject.toml: `pythonpath = ["tests"]`) and from
scripts, which put tests/ on sys.path themselves (see scripts/testhost.py).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root directory."""
