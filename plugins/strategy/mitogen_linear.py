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
import importlib
import importlib.util
import os
import sys
import types
import typing as t
from pathlib import Path

from ansible import constants as C
from ansible._internal._display_utils import DeferredWarningContext
from ansible._internal._task import TaskContext
from ansible._internal._templating._engine import TemplateEngine
from ansible.collections.list import list_collection_dirs
from ansible.executor.task_executor import TaskExecutor
from ansible.executor.task_result import _RawTaskResult
from ansible.inventory.host import Host
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins import loader as plugin_loader
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


def _skipped_by_condition(
    loader: t.Any, host: Host, task: Task, task_vars: dict[str, t.Any], play_context: PlayContext
) -> dict[str, t.Any] | None:
    """The result a worker would return for TASK on HOST, where its `when` is false; else None.

    Ansible forks a worker for every task and host, and the worker decides whether the task is
    skipped (TaskExecutor._execute_internal). Here the same decision is made before forking, with
    the variables the worker would get and the same calls in the same order: the task's play
    context applied to them, its conditions resolved. None (fork as usual) for every task where
    that could differ or where the answer is not a plain skip: no condition, a loop (conditions
    per item), delegation (the worker works the delegated host's variables out), a condition
    that fails to evaluate or warns (the worker reports it as it always did).
    """
    if not task.when or task.loop_with or task.loop is not None or task.delegate_to:
        return None
    variables = dict(task_vars)
    variables["ansible_search_path"] = search_path = task.get_search_path()
    if loader.get_basedir() not in search_path:
        search_path.append(loader.get_basedir())
    templar = TemplateEngine(loader=loader, variables=variables)
    result_context: dict[str, t.Any] = {}
    try:
        with TaskContext(task), DeferredWarningContext(variables=variables) as warnings:
            context = play_context.set_task_and_variable_override(task=task, variables=variables, templar=templar)
            context.post_validate(templar=templar)
            if not context.remote_addr:
                context.remote_addr = host.address
            context.update_vars(variables)
            if task._resolve_conditional(task.when, variables, result_context=result_context):
                return None
        if warnings.get_warnings() or warnings.get_deprecation_warnings():
            return None
        result = dict(changed=False, skipped=True, skip_reason="Conditional result was False") | result_context
        task.update_result_no_log(templar, result)
    except Exception:  # the worker meets it again and reports it as Ansible always does
        return None
    return result


@functools.cache
def _plugin_utils(name: str) -> types.ModuleType:
    """The collection's plugins/plugin_utils/NAME.py: imported from the installed collection, or
    from beside this file where the strategy is found by path before the collection is
    installed (`strategy_plugins`, as Molecule's scenarios do)."""
    try:
        return importlib.import_module(f"ansible_collections.mlops.infra.plugins.plugin_utils.{name}")
    except ModuleNotFoundError as missing:
        if not (missing.name or "").startswith("ansible_collections.mlops"):
            raise
    spec = importlib.util.spec_from_file_location(
        f"_mlops_infra_{name}", Path(__file__).resolve().parent.parent / "plugin_utils" / f"{name}.py"
    )
    assert spec and spec.loader
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keep_compiled_templates() -> None:
    """Compile each template once per run in this process (plugin_utils/compiled_templates.py)."""
    _plugin_utils("compiled_templates").keep_compiled_templates()


_CONTROLLER_ACTIONS = frozenset(
    {
        "ansible.builtin.assert",
        "ansible.builtin.debug",
        "ansible.builtin.fail",
        "ansible.builtin.set_fact",
        "ansible.builtin.validate_argument_spec",
        "mlops.infra.assert_all",
    }
)


# Actions that sleep in the controller's process while they wait for a host.
_WAITING_ACTIONS = frozenset({"ansible.builtin.pause", "ansible.builtin.reboot", "ansible.builtin.wait_for_connection"})


def _runs_in_controller(task: Task, modules: bool) -> bool:
    """Whether TASK runs in the controller's process: an include, or an action that reads its
    arguments and variables and never the host; with MODULES (Mitogen connects to the host, and
    the host is the only one this task runs on or the hosts run side by side), any task,
    delegated ones too."""
    # Nothing that waits (retries, a loop's pause, async, a timeout's alarm, a sleeping action).
    if task.until or task.loop_control.pause or task.async_val or task.timeout:
        return False
    if modules:
        # A delegated task's executor works out the delegated host's variables and connection,
        # here as in a worker.
        return task.resolved_action not in _WAITING_ACTIONS
    # Beside other hosts, nothing that works on another host's variables.
    return not task.delegate_to and (
        task.action in C._ACTION_ALL_INCLUDE_ROLE_TASKS or task.resolved_action in _CONTROLLER_ACTIONS
    )


class _NoWorkerForControllerWork:
    """Runs in the controller's process a task that needs no worker: one whose condition is false
    for the host (queued as skipped), one that only works on the controller's data and, through
    Mitogen, any task that does not wait in the controller: a batch of one host's, and a batch
    of several hosts' side by side in greenlets (plugin_utils/side_by_side.py).

    A worker forked only to skip its task, or to set a fact, still cost the controller about
    4 000 page faults (copies of the pages of the controller's heap it touches) and 15 ms of CPU,
    and about 80 ms per extra host in a fleet, where the parent's heap is larger. A no-change
    `site.yml` skips 46 tasks a host and has its asserts, facts, debugs and includes besides.
    The result goes through the queue, callbacks and bookkeeping of a worker's
    (StrategyBase._queue_task), and a task that runs here runs in Ansible's own TaskExecutor on
    a copy of the task, as in a worker, so registered results, handlers and output are the same.
    A task that runs in a worker has its condition evaluated twice, here and there, as
    conditions are meant to be: without side effects; one that runs here, once, by its executor.

    Workers exist so that the hosts of a task run it side by side. A batch of one host (a single
    edge box, a host converging itself in pull mode, a canary batch) has nothing to run beside
    it, and through Mitogen a module runs in the interpreter kept on the host wherever the
    connection is opened: the controller's process opens it itself, once, instead of each forked
    worker. A no-change `site.yml` on one host forked about 96 workers; it now forks only for the
    tasks that wait (retries, pauses, async, timeouts). Several hosts need not be run by
    processes side by side either: each host's task waits for its host most of the time, and a
    greenlet gives way to the next host's meanwhile.
    """

    # Whether a batch of one host has every task run here (set where Mitogen connects).
    _modules_in_controller = False
    # Where the tasks of a batch of several hosts run side by side (set where Mitogen connects).
    _side_by_side: t.Any = None
    _executor_class: type[TaskExecutor] = TaskExecutor
    _hosts_in_batch = 0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _keep_compiled_templates()

    def get_hosts_left(self, iterator: t.Any) -> list[Host]:
        hosts = super().get_hosts_left(iterator)
        # The linear strategy asks for every task: the hosts the next task is queued for.
        self._hosts_in_batch = len(hosts)
        return hosts

    def _before_fork(self) -> None:
        """Called before a worker is forked for a task."""

    def _queue_task(self, host: Host, task: Task, task_vars: dict[str, t.Any], play_context: PlayContext) -> None:
        several = self._hosts_in_batch > 1
        # Side by side, except where the task limits how many hosts run it at once (`throttle`),
        # which workers do.
        side_by_side = self._side_by_side is not None and not task.throttle
        modules = self._modules_in_controller and (not several or side_by_side)
        in_controller = _runs_in_controller(task, modules)
        # A task run here has its condition decided by its executor, like any other.
        result = None if in_controller else _skipped_by_condition(self._loader, host, task, task_vars, play_context)
        if result is None and not in_controller:
            self._before_fork()
            super()._queue_task(host, task, task_vars, play_context)
            return
        # What StrategyBase._queue_task does before its worker starts: a loop's executor sends
        # each item's result back as it goes, which the results thread matches with this entry.
        self._queued_task_cache[(host.name, task._uuid)] = {
            "host": host,
            "task": task,
            "task_vars": task_vars,
            "play_context": play_context,
        }
        self._tqm.send_callback("v2_runner_on_start", host, task)
        self._pending_results += 1
        if not in_controller:
            self._send_result(host, task, result)
            return
        # The executor templates the task and its block in place, as a worker does its copies.
        sent = task.copy(exclude_tasks=True)
        executor = self._executor_class(
            host,
            sent,
            dict(task_vars),
            play_context,
            self._loader,
            plugin_loader.get_plugin_loader_namespace(),
            self._final_q,
            self._variable_manager,
        )

        def execute() -> None:
            with TaskContext(sent):
                self._send_result(host, sent, executor.run())

        if several and modules:
            # At most `forks` at once, as with workers.
            self._side_by_side.start(execute, limit=len(self._workers))
        else:
            execute()

    def _send_result(self, host: Host, task: Task, result: dict[str, t.Any]) -> None:
        self._final_q.send_task_result(
            _RawTaskResult(host=host, task=task, return_data=result, task_fields=task.dump_attrs())
        )

    def _process_pending_results(self, *args, **kwargs) -> list[t.Any]:
        if self._side_by_side is not None:
            self._side_by_side.poll()
        return super()._process_pending_results(*args, **kwargs)

    def _wait_on_pending_results(self, iterator: t.Any) -> list[t.Any]:
        if self._side_by_side is not None:
            self._side_by_side.drain()
        return super()._wait_on_pending_results(iterator)


try:
    # The strategy imports ansible_mitogen.loaders, which refuses an Ansible older than Mitogen
    # supports.
    import ansible_mitogen.affinity
    import ansible_mitogen.connection
    import ansible_mitogen.process
    from ansible_mitogen.strategy import StrategyMixin
except ImportError:
    Display().warning(
        "mlops.infra.mitogen_linear: the Python package mitogen is not installed on the controller "
        "(pip install -r requirements.txt); running the plain linear strategy, which is slower."
    )

    class StrategyModule(_NoWorkerForControllerWork, LinearStrategy):  # type: ignore[no-redef]
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

    def _hosts_side_by_side() -> t.Any:
        """Where the tasks of a batch of several hosts run side by side; None where the greenlet
        package is missing, or where hosts are spread over several multiplexers
        (MITOGEN_CPU_COUNT), whose connections the controller's process could not keep at once."""
        if ansible_mitogen.process.get_cpu_count(default=1) != 1 or importlib.util.find_spec("greenlet") is None:
            return None
        return _plugin_utils("side_by_side").side_by_side()

    class _ControllerTaskExecutor(TaskExecutor):
        """Ansible's TaskExecutor, which leaves the controller's Mitogen broker running when its
        task ends.

        An executor closes its connection at the end of its task, and Mitogen's close shuts down
        the process's broker (a thread) and its connection to the multiplexer, which is right in
        a worker that is about to exit. In the controller's process the next task would start
        both again, and the tasks of hosts running side by side share them. The connection
        still hands its host's interpreter back to the multiplexer. The strategy shuts the
        broker down itself before it forks a worker, and at the end of the play.
        """

        def _get_connection(self, cvars: t.Any, templar: t.Any, current_connection: str) -> t.Any:
            connection = super()._get_connection(cvars, templar, current_connection)
            if isinstance(connection, ansible_mitogen.connection.Connection):
                connection.close = connection._put_connection
            return connection

    class StrategyModule(_NoWorkerForControllerWork, StrategyMixin, LinearStrategy):  # type: ignore[no-redef]
        """Ansible's linear strategy with Mitogen's connections and in-process module runs."""

        _modules_in_controller = True
        _executor_class = _ControllerTaskExecutor

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            _leave_small_controllers_cpus_to_the_kernel()
            _import_collections()
            _freeze_inherited_heap_in_workers()
            self._side_by_side = _hosts_side_by_side()

        def _before_fork(self) -> None:
            # A worker must not inherit a broker whose thread it does not have.
            ansible_mitogen.process.get_worker_model().on_binding_close()

        def run(self, iterator: t.Any, play_context: PlayContext) -> int:  # type: ignore[override]
            try:
                return super().run(iterator, play_context)
            finally:
                # The broker's thread would keep the program from exiting.
                ansible_mitogen.process.get_classic_worker_model().on_binding_close()
