"""Start or remove a systemd test host container outside Molecule.

A command line over tests/mlops_testkit/testhosts.py: the container settings come from the
shared Molecule configuration (.config/molecule/config.yml, first platform), so the local
edge host, the benchmarks and every scenario boot their hosts the same way.

    python scripts/testhost.py start NAME [--publish 127.0.0.1:8080:8080 ...] [--image IMAGE]
    python scripts/testhost.py remove NAME
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mlops_testkit import testhosts  # tests/ is put on the path just above


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "remove"])
    parser.add_argument("name")
    parser.add_argument("--image")
    parser.add_argument("--publish", action="append", default=[])
    ns = parser.parse_args()
    if ns.action == "remove":
        testhosts.remove(ns.name)
        print(f"    test host {ns.name} removed with its volumes")
        return
    try:
        host = testhosts.start(ns.name, ns.image, ns.publish)
    except testhosts.HostBootError as error:
        sys.exit(str(error))
    print(f"    test host {host.name} {'already running: reused' if host.reused else 'booted'} ({host.state})")


if __name__ == "__main__":
    main()
