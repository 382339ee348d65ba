"""Mitogen's linear strategy under this collection's name, or Ansible's own when Mitogen is absent.

Ansible runs each task as a fresh Python program on the host that unpacks and compiles its
module_utils again: about 0.35 s per task on an edge box before the task does anything.
Mitogen (https://mitogen.networkgenomics.com, `mitogen` on PyPI, pinned in requirements.txt)
keeps one interpreter per host for the whole run and reuses the imported modules: a no-change
`site.yml` run took 0.47x the time on the local edge host (BENCHMARKS.md). It takes over the
connections named `ssh`, `local` and `docker`, not `community.docker.docker`.

Selected by `strategy = mlops.infra.mitogen_linear` in ansible.cfg. Where Mitogen is not
installed (a pull host with Debian's ansible-core, or a controller set up by hand), the plain
linear strategy runs instead and a warning says so: the run is slower, never different.
"""

from __future__ import annotations

import functools
import gc
import os

from ansible.collections.list import list_collection_dirs
from ansible.plugins.strategy.linear import StrategyModule as LinearStrategy
from ansible.utils.display import Display

DOCUMENTATION = """
name: mitogen_linear
short_description: Mitogen's linear strategy, or Ansible's linear strategy without Mitogen
description:
  - Runs the play like C(ansible.builtin.linear), through Mitogen when the C(mitogen) Python
    package is installed on the controller.
  - Without it, falls back to C(ansible.builtin.linear) and warns.
author: mlops.infra
"""


@functools.cache
def _freeze_inherited_heap_in_workers() -> None:
    """Have every worker forked from here leave the objects it inherits out of its collections.

    Ansible forks a worker from this process for every task and host. A worker inherits the
    controller's whole heap (roles, variables, inventory: about 200 000 objects in `site.yml`),
    and its garbage collector walked all of them whenever the worker's allocations made it
    collect the oldest generation: about 0.15 s of CPU, and a copy of every page it touched,
    in one task out of ten. `gc.freeze()` in the new worker moves what it inherited to the
    permanent generation, Python's documented remedy for fork without exec. The worker's own
    objects are still collected, and this process's collector is left as it was.
    """
    os.register_at_fork(after_in_child=gc.freeze)


try:
    # The strategy imports ansible_mitogen.loaders, which refuses an Ansible older than Mitogen
    # supports.
    import ansible_mitogen.affinity
    from ansible_mitogen.strategy import StrategyMixin
except ImportError:
    Display().warning(
        "mlops.infra.mitogen_linear: the Python package mitogen is not installed on the controller "
        "(pip install -r requirements.txt); running the plain linear strategy, which is slower."
    )

    class StrategyModule(LinearStrategy):  # type: ignore[no-redef]
        """Ansible's linear strategy, its workers leaving their inherited heap to be."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            _freeze_inherited_heap_in_workers()

else:

    @functools.cache
    def _import_collections() -> list[bytes]:
        """List, and so import, every installed collection, once per run in the controller.

        For each task that runs a collection's module, Mitogen's planner lists every installed
        collection to put them on the host's import path, and the listing imports each
        collection's package, reading its meta/runtime.yml. Ansible forks a new worker for every
        task and host, so each worker did that afresh: 0.3 s of controller CPU per such task with
        the ~90 collections of the `ansible` package. Done here, before the workers fork, they
        inherit the imported packages and the listing finds them in sys.modules.
        """
        return list(list_collection_dirs())

    @functools.cache
    def _leave_small_controllers_cpus_to_the_kernel() -> None:
        """Let the workers of a controller with fewer than four CPUs run on any of them.

        Mitogen pins its processes to CPUs (ansible_mitogen.affinity). With two or three CPUs it
        keeps CPU 0 for its connection multiplexer and pins the top-level process and every
        worker to the rest, one by one: on two CPUs that is CPU 1 for all of them, so the
        workers of the hosts of a task never ran at once. A no-change `site.yml` on four test
        hosts took 42.2 to 44.7 s pinned and 28.1 to 31.0 s without the pinning, one host the
        same either way (BENCHMARKS.md). Mitogen's base policy pins nothing, and the kernel
        places the processes. Controllers with four CPUs or more keep Mitogen's placement,
        which leaves the workers at least two CPUs of their own.
        """
        if len(os.sched_getaffinity(0)) < 4:
            ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()

    class StrategyModule(StrategyMixin, LinearStrategy):  # type: ignore[no-redef]
        """Ansible's linear strategy with Mitogen's connections and in-process module runs."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            _leave_small_controllers_cpus_to_the_kernel()
            _import_collections()
            _freeze_inherited_heap_in_workers()
