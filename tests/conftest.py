"""Root of the pytest suites under tests/.

The skip policy and the test ordering live in mlops_testkit.pytest_plugin, which
pyproject.toml's addopts loads for every pytest run under the repository (Molecule verifiers
and roles/*/tests included). Named here too, so that a run with other options (`-o addopts=`,
`-c` another file) under tests/ still applies it: pytest registers a plugin only once.
"""

from __future__ import annotations

pytest_plugins = ["mlops_testkit.pytest_plugin"]
