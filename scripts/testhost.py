"""Start or remove a systemd test host container outside Molecule.

The container settings come from the shared Molecule configuration
(.config/molecule/config.yml, first platform), so the local edge host, the benchmarks and
every scenario boot their hosts the same way.

    python scripts/testhost.py start NAME [--publish 127.0.0.1:8080:8080 ...] [--image IMAGE]
    python scripts/testhost.py remove NAME
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def platform_settings() -> dict[str, Any]:
    config = yaml.safe_load((ROOT / ".config/molecule/config.yml").read_text())
    return dict(config["platforms"][0])


def docker_run_args(name: str, image: str | None, publish: list[str]) -> list[str]:
    p = platform_settings()
    args = [
        "docker",
        "run",
        "--detach",
        "--name",
        name,
        "--hostname",
        name,
        "--label",
        "owner=mlops-testhost",
    ]
    args += [f"--cap-add={c}" for c in p.get("capabilities", [])]
    args += [f"--security-opt={o}" for o in p.get("security_opts", [])]
    if "cgroupns_mode" in p:
        args.append(f"--cgroupns={p['cgroupns_mode']}")
    args += [f"--volume={v}" for v in p.get("volumes", [])]
    args += [f"--tmpfs={t}" for t in p.get("tmpfs", [])]
    args += [f"--publish={port}" for port in publish]
    args.append(image or p["image"])
    args += str(p.get("command", "")).split()
    return args


def running(name: str) -> bool:
    state = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return state.returncode == 0 and state.stdout.strip() == "true"


def start(name: str, image: str | None, publish: list[str]) -> None:
    if running(name):
        print(f"    test host {name} already running: reused")
        return
    subprocess.run(["docker", "rm", "--force", "--volumes", name], capture_output=True, check=False)
    subprocess.run(docker_run_args(name, image, publish), check=True, stdout=subprocess.DEVNULL)
    state = ""
    # Right after `docker run` systemd may not answer yet: ask again until it does.
    for _ in range(60):
        boot = subprocess.run(
            ["docker", "exec", name, "systemctl", "is-system-running", "--wait"],
            capture_output=True,
            text=True,
            check=False,
        )
        state = boot.stdout.strip()
        if state:
            break
        time.sleep(1)
    if state not in ("running", "degraded"):
        sys.exit(f"test host {name} did not boot: systemd says {state!r}")
    print(f"    test host {name} booted ({state})")


def remove(name: str) -> None:
    subprocess.run(["docker", "rm", "--force", "--volumes", name], capture_output=True, check=False)
    print(f"    test host {name} removed with its volumes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "remove"])
    parser.add_argument("name")
    parser.add_argument("--image")
    parser.add_argument("--publish", action="append", default=[])
    ns = parser.parse_args()
    if ns.action == "start":
        start(ns.name, ns.image, ns.publish)
    else:
        remove(ns.name)


if __name__ == "__main__":
    main()
