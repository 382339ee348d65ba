"""The checkout is a real collection: it builds small, installs, and runs from the install.

The build runs on the working tree as it is after the other tests (virtual environments,
image bundles, vendored assets and Molecule state around it): none of that may reach the
tarball. The installed collection then runs its edge playbook from a directory outside the
checkout, with only the installed copy on the collections path. And the test command that CI
runs leaves out no Molecule scenario.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 5 * 1024 * 1024
# Nothing a checkout builds or installs locally belongs in the tarball.
FORBIDDEN = (".venv", ".venv-checkov", ".git/", "artifacts/", "build/", "collections/ansible_collections",
             "molecule/", "tests/", "__pycache__", ".pyc", "vendor/", "wheelhouse", ".cache/")  # fmt: skip


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build")
    built = run("ansible-galaxy", "collection", "build", "--output-path", str(out), str(ROOT), cwd=ROOT)
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("mlops-infra-*.tar.gz")
    return path


def test_tarball_is_small_and_carries_no_local_artifact(tarball: Path) -> None:
    assert tarball.stat().st_size < LIMIT, f"{tarball.stat().st_size} bytes"
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    leaked = [n for n in names if any(f in n for f in FORBIDDEN)]
    assert not leaked, leaked[:20]
    for needed in ("galaxy.yml", "MANIFEST.json", "playbooks/edge.yml", "plugins/filter/catalogue.py",
                   "roles/edge_stack/tasks/main.yml", "roles/mlops/defaults/main.yml"):  # fmt: skip
        assert needed in names or needed == "galaxy.yml", needed


def test_manifest_declares_the_dependencies_with_ranges(tarball: Path) -> None:
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    deps = manifest["collection_info"]["dependencies"]
    required = yaml.safe_load((ROOT / "collections/requirements.yml").read_text())["collections"]
    assert deps == {c["name"]: c["version"] for c in required}
    assert all("<" in v and ">=" in v for v in deps.values()), deps
    assert "example" not in json.dumps(manifest["collection_info"].get("repository") or "")


def test_the_installed_collection_runs_its_edge_playbook(tarball: Path, tmp_path: Path) -> None:
    """Installed outside the checkout and run from there: the input checks of mlops.infra.edge pass
    on the sample edge inventory (roles, filter plugin and specs all resolve from the install);
    the run then stops only at its first contact with a host that does not exist here."""
    collections = tmp_path / "collections"
    installed = run(
        "ansible-galaxy", "collection", "install", "--no-deps", "-p", str(collections), str(tarball), cwd=tmp_path
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (collections / "ansible_collections/mlops/infra/playbooks/edge.yml").is_file()
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump({"edge": {"hosts": {"edge-missing": {"ansible_connection": "community.docker.docker"}}}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1", ANSIBLE_ROLES_PATH=str(tmp_path / "none")
    )
    extra = {
        "mlops_image_delivery": "registry",
        "hardening_deploy_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample x@y"],
    }
    played = run(
        "ansible-playbook", "mlops.infra.edge", "-i", str(inventory), "-e", json.dumps(extra), cwd=tmp_path, env=env
    )
    output = played.stdout + played.stderr
    assert str(ROOT) not in output.replace(str(tmp_path), ""), "something resolved from the checkout"
    checks = output.partition("PLAY [Harden the edge hosts]")[0]
    assert "PLAY [Check every input of the edge path before any host is changed]" in checks, output[-3000:]
    # The catalogue and the variable-only checks of every role passed, from the install...
    before_contact = checks.partition("UNREACHABLE")[0]
    assert "TASK [mlops.infra.mlops : Check the service catalogue" in before_contact, before_contact[-3000:]
    assert "ok: [edge-missing]" in before_contact, before_contact[-3000:]
    # ...and the first failure is the contact with a host that does not exist here.
    first_failure = before_contact.rsplit("TASK [", 1)[-1]
    assert "failed:" not in before_contact.rsplit("TASK [", 1)[0], before_contact[-3000:]
    assert "fatal: [edge-missing]" in first_failure, first_failure
    assert "UNREACHABLE" in output, output[-3000:]


def test_the_test_command_runs_every_molecule_scenario() -> None:
    """scripts/test.sh (the README's test command, CI's) lists the scenarios by name: one
    missing from that list would never run."""
    script = (ROOT / "scripts/test.sh").read_text()
    line = next(line for line in script.splitlines() if line.startswith("ALL_SCENARIOS=("))
    listed = line.removeprefix("ALL_SCENARIOS=(").removesuffix(")").split()
    scenarios = {p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml")}
    scenarios |= {p.parents[2].name for p in (ROOT / "roles").glob("*/molecule/default/molecule.yml")}
    assert len(listed) == len(set(listed))
    assert set(listed) == scenarios
