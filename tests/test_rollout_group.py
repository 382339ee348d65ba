"""Which hosts a run sorts into the canary batches (role mlops, tasks/rollout-group.yml).

playbooks/rollout-batches.yml puts a host in group mlops_rollout_steady, deployed in one batch,
only when its model-serving container already runs the run's release from the run's image;
every other host goes in mlops_rollout_batched, deployed in the canary batches. These tests
run the real tasks file on this machine (local connection) against a real container of the
API image, named for the test, and read the group each run chose.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlops_testkit.ansible import run_playbook
from mlops_testkit.docker import require_image

API_IMAGE = "mlops/inference-api:1.0.0"
OTHER_IMAGE = "mlops/frontend:1.0.0"
GROUP = re.compile(r"ROLLOUT_GROUP=(\S*)")
PLAY = [
    {
        "name": "Sort this machine as a rollout would",
        "hosts": "edge",
        "gather_facts": False,
        "tasks": [
            # What edge_stack's input checks register before the sort: the controller's images.
            {
                "name": "Ask the controller's engine for the images",
                "community.docker.docker_image_info": {"name": [API_IMAGE, OTHER_IMAGE]},
                "register": "edge_stack_controller_images",
            },
            {
                "name": "Sort",
                "ansible.builtin.include_role": {"name": "mlops.infra.mlops", "tasks_from": "rollout-group"},
            },
            {
                "name": "Say the group",
                "ansible.builtin.debug": {
                    "msg": "ROLLOUT_GROUP={{ group_names | select('match', 'mlops_rollout_') | join(',') }}"
                },
            },
        ],
    }
]


@pytest.fixture(scope="module")
def serving() -> Iterator[str]:
    """A running container of the API image serving breast-cancer-lr 1.0.0, as Compose starts it."""
    require_image(API_IMAGE, "scripts/build-images.sh inference-api")
    name = f"rollout-group-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "-e", "MODEL_NAME=breast-cancer-lr", "-e", "MODEL_VERSION=1.0.0",
         API_IMAGE],
        check=True, capture_output=True,
    )  # fmt: skip
    yield name
    subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def sorted_into(tmp_path: Path, container: str, **extra: object) -> str:
    """The group one run of the sort put this machine in."""
    (tmp_path / "sort.yml").write_text(yaml.safe_dump(PLAY, sort_keys=False))
    inventory = {
        "edge": {
            "hosts": {"rollout-test": {"ansible_connection": "local"}},
            "vars": {
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                "mlops_environment": "edge",
                "mlops_image_delivery": "bundle",
                "mlops_service_overrides": {"inference-api": {"container_name": container}},
            },
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    run = run_playbook(tmp_path / "sort.yml", inventory=tmp_path / "hosts.yml", extra_vars=extra or None)
    assert run.returncode == 0, run.tail()
    assert run.total_changed == 0, run.tail()
    found = GROUP.findall(run.output)
    assert len(found) == 1, run.tail()
    return found[0]


def test_a_host_that_serves_the_release_from_the_image_is_steady(tmp_path: Path, serving: str) -> None:
    assert sorted_into(tmp_path, serving) == "mlops_rollout_steady"


def test_another_release_goes_in_the_canary_batches(tmp_path: Path, serving: str) -> None:
    assert sorted_into(tmp_path, serving, mlops_model_version="1.1.0") == "mlops_rollout_batched"


def test_another_image_goes_in_the_canary_batches(tmp_path: Path, serving: str) -> None:
    # The run ships another image (by ID, as bundles are) for the API: the container runs another.
    require_image(OTHER_IMAGE, "scripts/build-images.sh frontend")
    assert sorted_into(tmp_path, serving, mlops_images={"inference-api": OTHER_IMAGE}) == "mlops_rollout_batched"


def test_a_host_without_the_container_goes_in_the_canary_batches(tmp_path: Path, serving: str) -> None:
    assert sorted_into(tmp_path, f"{serving}-absent") == "mlops_rollout_batched"


def test_a_stopped_container_goes_in_the_canary_batches(tmp_path: Path, serving: str) -> None:
    stopped = f"{serving}-stopped"
    subprocess.run(["docker", "create", "--name", stopped, "-e", "MODEL_NAME=breast-cancer-lr",
                    "-e", "MODEL_VERSION=1.0.0", API_IMAGE], check=True, capture_output=True)  # fmt: skip
    try:
        assert sorted_into(tmp_path, stopped) == "mlops_rollout_batched"
    finally:
        subprocess.run(["docker", "rm", "-f", stopped], check=False, capture_output=True)
