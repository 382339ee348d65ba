"""hardening_packages_extra goes into the role's apt transaction, and that transaction refreshes
package lists that are missing, whatever the age of their directory.

The test runs the scenario's converge.yml again against one converged test host, after deleting
its package lists: the directory is then younger than the role's cache_valid_time, as on a host
made from a freshly built image, where apt would find no package at all without a refresh.
"""

from __future__ import annotations

from mlops_testkit.ansible import scenario_playbook
from testinfra.host import Host

# Small, in every supported Debian release, and not one the role installs.
EXTRA = "tree"


def test_an_extra_package_installs_from_package_lists_the_host_lacked(host: Host) -> None:
    assert not host.package(EXTRA).is_installed
    host.check_output("find /var/lib/apt/lists -maxdepth 1 -type f -name '*_Packages*' -delete")
    try:
        run = scenario_playbook(
            "converge.yml",
            "--limit",
            host.backend.get_hostname(),
            "--tags",
            "hardening_packages",
            extra_vars={"hardening_packages_extra": [EXTRA]},
        )
        assert run.returncode == 0, run.tail()
        assert host.package(EXTRA).is_installed
        assert host.check_output("find /var/lib/apt/lists -maxdepth 1 -type f -name '*_Packages*'")
    finally:
        host.run(f"apt-get purge --yes --quiet {EXTRA}")
    assert not host.package(EXTRA).is_installed
