"""The run strategy of ansible.cfg (plugins/strategy/mitogen_linear.py), with and without Mitogen.

Real ansible-playbook runs on this machine with a local connection. Two `command` tasks print
the parent of the command they start: the Python process that ran the module. Through Mitogen
both tasks run in the one interpreter the run keeps for the host (the same parent); with
Ansible's own strategy each task is a fresh Python program (two parents).

Through Mitogen, every task runs in the controller's process, the tasks of several hosts side by
side; the tests of what happens in a task's worker give their tasks a timeout, which still forks
one, and run their plays on two hosts (TWO_HOSTS, both this machine).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

from mlops_testkit import ROOT
from mlops_testkit.ansible import PlaybookRun, run_playbook

PARENTS = """\
- name: Two tasks that print the process that ran them
  hosts: all
  gather_facts: false
  tasks:
    - name: First task
      ansible.builtin.command: cat /proc/self/stat
      register: first
      changed_when: false
    - name: Second task
      ansible.builtin.command: cat /proc/self/stat
      register: second
      changed_when: false
    - name: Print both parents
      ansible.builtin.debug:
        msg: "parents {{ first.stdout.split()[3] }} {{ second.stdout.split()[3] }}"
"""

FALLBACK_WARNING = "the Python package mitogen is not installed on the controller"
ONE_HOST = "localhost,"
# A second name for this machine: with two hosts in the play, each task forks a worker per host.
TWO_HOSTS = "localhost,second,"


def run_and_read(
    tmp_path: Path, playbook_text: str, marker: str, hosts: str = ONE_HOST, **env: str
) -> tuple[PlaybookRun, str]:
    """Runs PLAYBOOK_TEXT on HOSTS, this machine under each name, with the project's ansible.cfg;
    returns the run and what its output prints after MARKER (for the first host to print it)."""
    playbook = tmp_path / f"{marker}.yml"
    playbook.write_text(playbook_text)
    run = run_playbook(
        playbook,
        inventory=hosts,
        extra_vars={"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), **env},
        timeout=300,
    )
    assert run.returncode == 0, run.tail()
    line = next(line for line in run.output.splitlines() if f"{marker} " in line)
    return run, line.split(f"{marker} ", 1)[1].strip(" '\"")


def hide_mitogen(tmp_path: Path) -> str:
    """A PYTHONPATH on which `ansible_mitogen` fails to import: a controller without Mitogen."""
    hidden = tmp_path / "no-mitogen"
    hidden.mkdir()
    (hidden / "ansible_mitogen.py").write_text('raise ImportError("hidden by the test")\n')
    return str(hidden)


IN_WORKER = """\
- name: A task whose worker answers
  hosts: all
  gather_facts: false
  tasks:
    - name: Template the expression in the task's worker
      # A module's arguments are templated where its task runs (debug's in the controller), and a
      # task with a timeout runs in a worker: the alarm that ends it would end the controller.
      ansible.builtin.command:
        argv: [echo, "{{{{ {expression} }}}}"]
      changed_when: false
      register: answer
      timeout: 300
    - name: Print the answer
      ansible.builtin.debug:
        msg: "{marker} {{{{ answer.stdout }}}}"
"""


def read_in_worker(tmp_path: Path, filter_text: str, expression: str, marker: str, **env: str) -> str:
    """Templates EXPRESSION in a task's worker process, with FILTER_TEXT as an adjacent filter
    plugin; returns what the worker answered."""
    (tmp_path / "filter_plugins").mkdir()
    (tmp_path / "filter_plugins" / f"{marker}.py").write_text(filter_text)
    playbook = IN_WORKER.format(expression=expression, marker=marker)
    return run_and_read(tmp_path, playbook, marker, TWO_HOSTS, **env)[1]


def parents(tmp_path: Path, **env: str) -> tuple[PlaybookRun, set[str]]:
    """Runs the two-task playbook; returns the run and the parent PIDs."""
    run, value = run_and_read(tmp_path, PARENTS, "parents", **env)
    return run, set(value.split())


def test_the_project_runs_every_task_of_a_host_in_one_interpreter(tmp_path: Path) -> None:
    run, pids = parents(tmp_path)
    assert len(pids) == 1, f"two tasks ran in {pids}: not through Mitogen\n{run.tail()}"
    assert FALLBACK_WARNING not in run.output


def test_ansible_s_own_strategy_is_one_program_per_task(tmp_path: Path) -> None:
    """The control: the same playbook with `ANSIBLE_STRATEGY=linear` (how to turn Mitogen off)."""
    run, pids = parents(tmp_path, ANSIBLE_STRATEGY="linear")
    assert len(pids) == 2, run.tail()


def test_without_mitogen_the_strategy_runs_plain_linear_and_says_so(tmp_path: Path) -> None:
    """A controller without the package (an `ansible_mitogen` that fails to import stands in)."""
    run, pids = parents(tmp_path, PYTHONPATH=hide_mitogen(tmp_path))
    assert FALLBACK_WARNING in run.output, run.tail()
    assert len(pids) == 2, run.tail()


LOADED_FILTER = """\
import sys


class FilterModule:
    def filters(self):
        return {"loaded_collections": lambda _: sorted(m for m in sys.modules if m.count(".") == 2
                                                        and m.startswith("ansible_collections."))}
"""


def loaded_collections(tmp_path: Path, **env: str) -> set[str]:
    """The collection packages a task's worker process has imported before its task runs."""
    return set(
        read_in_worker(tmp_path, LOADED_FILTER, "0 | loaded_collections | join(',')", "loaded", **env).split(",")
    )


def test_workers_inherit_the_collections_the_strategy_imported_before_they_forked(tmp_path: Path) -> None:
    """Mitogen's planner lists every installed collection in each worker that runs a collection's
    module, importing them all; the strategy does it once before the workers fork."""
    assert {"ansible_collections.community.docker", "ansible_collections.ansible.posix"} <= loaded_collections(tmp_path)


def test_ansible_s_own_strategy_leaves_the_collections_to_each_worker(tmp_path: Path) -> None:
    """The control: without the strategy, a task that needs none of them finds them not imported."""
    assert "ansible_collections.community.docker" not in loaded_collections(tmp_path, ANSIBLE_STRATEGY="linear")


FROZEN_FILTER = """\
import gc


class FilterModule:
    def filters(self):
        return {"frozen_objects": lambda _: gc.get_freeze_count()}
"""


def frozen_objects(tmp_path: Path, **env: str) -> int:
    """The objects in the permanent generation of a task's worker: what its garbage collector
    leaves out."""
    return int(read_in_worker(tmp_path, FROZEN_FILTER, "0 | frozen_objects", "frozen", **env))


def test_workers_leave_the_heap_they_inherit_out_of_their_garbage_collections(tmp_path: Path) -> None:
    """Each worker freezes what it inherited from the controller's process when it forks, so its
    collector never walks (and copies) that heap; tens of thousands of objects even in this
    one-task play."""
    assert frozen_objects(tmp_path) > 10_000


def test_without_mitogen_the_workers_leave_their_inherited_heap_too(tmp_path: Path) -> None:
    assert frozen_objects(tmp_path, PYTHONPATH=hide_mitogen(tmp_path)) > 10_000


def test_ansible_s_own_strategy_collects_the_inherited_heap_in_every_worker(tmp_path: Path) -> None:
    """The control: Ansible's linear strategy leaves the worker's permanent generation empty."""
    assert frozen_objects(tmp_path, ANSIBLE_STRATEGY="linear") == 0


CPUS_FILTER = """\
import json
import os


class FilterModule:
    def filters(self):
        return {"allowed_cpus": lambda _: ",".join(map(str, sorted(os.sched_getaffinity(0))))}
"""


def test_workers_of_a_two_cpu_controller_may_run_on_both(tmp_path: Path) -> None:
    """On a controller with two CPUs, Mitogen pinned the top-level process and every worker to
    the second, keeping the first for its multiplexer: the workers of a task's hosts never ran
    at once. The run is held to the first two CPUs this process may use: on a machine with more,
    where they are CPUs 0 and 1, Mitogen's placement for big machines pins the top-level process
    to CPU 1 too, and the workers inherit it, so the check fails there without the change as
    well."""
    mine = os.sched_getaffinity(0)
    two = sorted(mine)[:2]
    assert len(two) == 2, "the check needs a machine with two CPUs or more"
    os.sched_setaffinity(0, two)  # inherited by ansible-playbook
    try:
        cpus = read_in_worker(tmp_path, CPUS_FILTER, "0 | allowed_cpus", "cpus")
    finally:
        os.sched_setaffinity(0, mine)
    assert cpus == ",".join(map(str, two))


NOTED_FILTER = """\
import json
import os


class FilterModule:
    def filters(self):
        return {"noted": noted}


def noted(value, path, label):
    with open(path, "a") as log:
        log.write(f"{label} {os.getpid()} {os.getppid()}\\n")
    return value
"""

NOTED = """\
- name: One task whose condition is false, one whose condition is true
  hosts: all
  gather_facts: false
  tasks:
    - name: A task whose condition is false
      ansible.builtin.command: "false"
      when: false | noted(log, 'skipped')
    - name: A task whose condition is true
      ansible.builtin.command: "true"
      changed_when: false
      when: true | noted(log, 'ran')
    - name: Say that the play ended
      ansible.builtin.debug:
        msg: "noted done"
"""


def run_noted(
    tmp_path: Path, playbook_text: str, marker: str, hosts: str = ONE_HOST, **env: str
) -> tuple[PlaybookRun, str, dict[str, list[tuple[int, int]]]]:
    """run_and_read with the `noted` filter beside PLAYBOOK_TEXT, its `noted(log, LABEL)` calls
    writing to a log in TMP_PATH; also returns the (process, parent) pairs noted for each label."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "noted.log"
    (tmp_path / "filter_plugins").mkdir()
    (tmp_path / "filter_plugins" / "noted.py").write_text(NOTED_FILTER)
    run, value = run_and_read(tmp_path, playbook_text.replace("noted(log", f"noted('{log}'"), marker, hosts, **env)
    noted: dict[str, list[tuple[int, int]]] = {}
    for line in log.read_text().splitlines():
        label, pid, ppid = line.split()
        noted.setdefault(label, []).append((int(pid), int(ppid)))
    return run, value, noted


# The same tasks, each with a timeout: what runs of them runs in a worker.
NOTED_IN_WORKERS = NOTED.replace("      when: ", "      timeout: 300\n      when: ")


def where_conditions_ran(
    tmp_path: Path, hosts: str = TWO_HOSTS, playbook_text: str = NOTED_IN_WORKERS, **env: str
) -> dict[str, list[tuple[int, int]]]:
    """Runs the two conditions on HOSTS through a filter that notes the process evaluating them;
    returns the (process, parent) pairs noted for each task."""
    return {"skipped": [], "ran": []} | run_noted(tmp_path, playbook_text, "noted", hosts, **env)[2]


def test_a_task_whose_condition_is_false_is_skipped_without_forking_a_worker(tmp_path: Path) -> None:
    """On two hosts, each false condition of a task that would run in a worker is evaluated in the
    controller's process, the parent of the workers that run the next task, and in no worker.
    Each true one is evaluated in both."""
    assert NOTED_IN_WORKERS.count("timeout: 300") == 2
    noted = where_conditions_ran(tmp_path)
    controllers = {pid for pid, _ in noted["skipped"]}
    assert len(noted["skipped"]) == 2 and len(controllers) == 1, noted
    workers = [pid for pid, parent in noted["ran"] if parent in controllers]
    assert len(noted["ran"]) == 4 and len(set(workers)) == 2, noted
    assert sorted(pid for pid, _ in noted["ran"] if pid not in workers) == sorted(controllers) * 2, noted


def test_ansible_s_own_strategy_forks_a_worker_to_skip_a_task(tmp_path: Path) -> None:
    """The control: with Ansible's linear strategy each condition is evaluated once, in a worker
    forked from the controller's process, even for a single host."""
    noted = where_conditions_ran(tmp_path, ONE_HOST, NOTED, ANSIBLE_STRATEGY="linear")
    assert len(noted["skipped"]) == len(noted["ran"]) == 1, noted
    (skipped, controller), (ran, also_controller) = noted["skipped"][0], noted["ran"][0]
    assert controller == also_controller and len({skipped, ran, controller}) == 3, noted


def test_a_play_of_one_host_runs_every_task_in_the_controller_s_process(tmp_path: Path) -> None:
    """With nothing to run beside it, a single host's tasks run where Mitogen's connection is
    opened once: the controller's process. Each condition is evaluated once, by its executor."""
    noted = where_conditions_ran(tmp_path, ONE_HOST, NOTED)
    assert len(noted["skipped"]) == len(noted["ran"]) == 1, noted
    assert noted["skipped"][0] == noted["ran"][0], noted


def test_without_mitogen_a_play_of_one_host_still_forks_a_worker_per_task(tmp_path: Path) -> None:
    """Ansible's own connections are left to workers: the true condition is evaluated in the
    controller (the skip check) and again in the worker that runs the task."""
    noted = where_conditions_ran(tmp_path, ONE_HOST, NOTED, PYTHONPATH=hide_mitogen(tmp_path))
    (controller, _), (skipped, _) = noted["ran"][0], noted["skipped"][0]
    assert controller == skipped and [parent for _, parent in noted["ran"][1:]] == [controller], noted


SKIPPED = """\
- name: Tasks skipped by their conditions, their results registered
  hosts: all
  gather_facts: false
  vars:
    wanted: false
  tasks:
    - name: A command whose condition is false, that would notify the handler
      ansible.builtin.command: echo never
      register: skipped_command
      notify: Fail if notified
      when: wanted
    - name: Tasks of a block whose condition is false
      when: wanted | bool
      block:
        - name: A debug message hidden from the log
          ansible.builtin.debug:
            msg: never
          register: skipped_hidden
          no_log: true
    - name: An include whose condition is false, of a file that does not exist
      ansible.builtin.include_tasks: absent.yml
      when: wanted
    - name: Print what was registered
      ansible.builtin.debug:
        msg: "registered {{ {'command': skipped_command, 'hidden': skipped_hidden} | to_json | b64encode }}"
  handlers:
    - name: Fail if notified
      ansible.builtin.fail:
        msg: notified by a skipped task
"""


def skipped_results(tmp_path: Path, **env: str) -> tuple[PlaybookRun, dict]:
    tmp_path.mkdir()
    run, registered = run_and_read(tmp_path, SKIPPED, "registered", **env)
    return run, json.loads(base64.b64decode(registered))


def test_a_task_skipped_without_a_worker_registers_what_a_worker_would(tmp_path: Path) -> None:
    """Registered results, the hidden one's censoring, the skipped include and the handler left
    alone: the same as with Ansible's own strategy, which forks a worker for each."""
    # Verbose, the callback prints each skipped result, the hidden one censored.
    mine, registered = skipped_results(tmp_path / "mine", ANSIBLE_VERBOSITY="1")
    theirs, expected = skipped_results(tmp_path / "theirs", ANSIBLE_VERBOSITY="1", ANSIBLE_STRATEGY="linear")
    assert registered == expected
    assert registered["command"]["skipped"] is True and registered["command"]["false_condition"] == "wanted"
    assert mine.recaps == theirs.recaps
    assert [r.skipped for r in mine.recaps] == [3], mine.tail()
    assert mine.output.count("skipping: [localhost]") == theirs.output.count("skipping: [localhost]") == 3
    censored = "the output has been hidden"
    assert mine.output.count(censored) == theirs.output.count(censored) == 1, mine.tail()


UNDEFINED = """\
- name: A condition on a variable nobody defined
  hosts: all
  gather_facts: false
  tasks:
    - name: A task whose condition cannot be evaluated
      ansible.builtin.debug:
        msg: never
      when: no_such_variable
"""


def test_a_condition_that_cannot_be_evaluated_fails_the_task_as_before(tmp_path: Path) -> None:
    """Left to the worker, which reports the error as Ansible always did."""
    outputs = []
    for name, env in (("mine", {}), ("theirs", {"ANSIBLE_STRATEGY": "linear"})):
        (tmp_path / name).mkdir()
        playbook = tmp_path / name / "undefined.yml"
        playbook.write_text(UNDEFINED)
        run = run_playbook(
            playbook,
            inventory="localhost,",
            extra_vars={"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), **env},
            timeout=300,
        )
        assert run.returncode == 2 and [r.failed for r in run.recaps] == [1], run.tail()
        outputs.append([line for line in run.output.splitlines() if "no_such_variable" in line])
    assert outputs[0] == outputs[1] and outputs[0], outputs


CONTROLLER = """\
- name: Tasks that work on the controller's data only
  hosts: all
  gather_facts: false
  vars:
    numbers: [1, 2, 3]
  tasks:
    - name: Note where a fact is set
      ansible.builtin.set_fact:
        total: "{{ numbers | sum | noted(log, 'set_fact') }}"
      register: set_result
    - name: Check it
      ansible.builtin.assert:
        that: total | int == 6
        quiet: true
      register: assert_result
    - name: Include a file for each number
      ansible.builtin.include_tasks: each.yml
      loop: "{{ numbers }}"
    - name: A check that fails, its failure ignored
      ansible.builtin.assert:
        that: total | int == 7
        fail_msg: "total is {{ total }}"
      ignore_errors: true
      register: failed_result
    - name: A check whose condition is false
      ansible.builtin.assert:
        that: false
      when: total | int == 7
      register: skipped_result
    - name: Note where a module's arguments are templated, in a worker (the task has a timeout)
      ansible.builtin.command:
        argv: [echo, "{{ 'module' | noted(log, 'module') }}"]
      changed_when: false
      timeout: 300
    - name: Print what was registered
      ansible.builtin.debug:
        msg: >-
          registered {{ {'set': set_result, 'assert': assert_result, 'failed': failed_result, 'skipped': skipped_result,
          'seen': seen}
          | to_json | b64encode }}
"""

EACH = """\
- name: Add ten times the number to a list
  ansible.builtin.set_fact:
    seen: "{{ seen | default([]) + [item * 10] }}"
"""


def controller_run(tmp_path: Path, **env: str) -> tuple[PlaybookRun, dict, dict[str, list[tuple[int, int]]]]:
    """Runs CONTROLLER; returns the run, what it registered and where the noted values were
    templated."""
    tmp_path.mkdir()
    (tmp_path / "each.yml").write_text(EACH)
    run, registered, noted = run_noted(tmp_path, CONTROLLER, "registered", TWO_HOSTS, **env)
    return run, json.loads(base64.b64decode(registered)), noted


def test_tasks_on_the_controller_s_data_run_in_its_process_with_a_worker_s_results(tmp_path: Path) -> None:
    """set_fact, assert, include_tasks and debug run in the controller's process, no worker
    forked for them; what they register and print is what workers of Ansible's own strategy
    give. A module's arguments, in a task with a timeout, are templated in a worker, whose parent
    is that process."""
    mine, registered, noted = controller_run(tmp_path / "mine")
    theirs, expected, their_noted = controller_run(tmp_path / "theirs", ANSIBLE_STRATEGY="linear")
    assert registered == expected
    assert registered["seen"] == [10, 20, 30] and registered["failed"]["failed"] is True
    assert registered["skipped"]["skipped"] is True
    assert mine.recaps == theirs.recaps
    controllers = {pid for pid, _ in noted["set_fact"]}
    assert len(noted["set_fact"]) == 2 and len(controllers) == 1, noted
    assert len({pid for pid, _ in noted["module"]} - controllers) == 2, noted
    assert {parent for _, parent in noted["module"]} == controllers, noted
    their_parents = {parent for label in ("set_fact", "module") for _, parent in their_noted[label]}
    their_pids = {pid for label in ("set_fact", "module") for pid, _ in their_noted[label]}
    assert len(their_parents) == 1 and len(their_pids) == 4 and not their_parents & their_pids, their_noted


MODULES = """\
- name: Module tasks of a play of one host
  hosts: all
  gather_facts: false
  tasks:
    - name: Note where a fact is set
      ansible.builtin.set_fact:
        fact: "{{ 'fact' | noted(log, 'set_fact') }}"
    - name: A command that reports a change and notifies the handler
      ansible.builtin.command:
        argv: [echo, "{{ 'module' | noted(log, 'module') }}"]
      register: changed_result
      notify: Say that the handler ran
    - name: A command for each item
      ansible.builtin.command: "echo {{ item }}"
      loop: [one, two]
      register: loop_result
      changed_when: false
    - name: A command that fails, its failure ignored
      ansible.builtin.command: "false"
      register: failed_result
      ignore_errors: true
    - name: A module that reads the machine
      ansible.builtin.stat:
        path: /
      register: stat_result
    - name: A command delegated to another host, the controller under another name
      ansible.builtin.command:
        argv: [echo, "{{ inventory_hostname }} {{ 'delegated' | noted(log, 'delegated') }}"]
      delegate_to: second
      register: delegated_result
      changed_when: false
    - name: A delegated command whose condition is false
      ansible.builtin.command: "false"
      delegate_to: second
      register: delegated_skipped
      when: false | noted(log, 'delegated_skipped')
    - name: Print what was registered
      ansible.builtin.debug:
        msg: >-
          registered {{ {'changed': changed_result | dict2items | selectattr('key', 'in', keys) | items2dict,
          'failed': failed_result | dict2items | selectattr('key', 'in', keys) | items2dict,
          'loop': loop_result.results | map(attribute='stdout') | list,
          'stat': [stat_result.stat.exists, stat_result.stat.isdir, stat_result.stat.mode],
          'delegated': [delegated_result.stdout, delegated_result.changed, delegated_skipped.skipped]}
          | to_json | b64encode }}
      vars:
        keys: [changed, failed, rc, stdout, stderr, cmd, msg]
  handlers:
    - name: Say that the handler ran
      ansible.builtin.debug:
        msg: handled by the handler
"""


def modules_run(
    tmp_path: Path, hosts: str = ONE_HOST, **env: str
) -> tuple[PlaybookRun, dict, dict[str, list[tuple[int, int]]]]:
    """Runs MODULES on HOSTS; returns the run, what it registered (for the first host to print
    it) and where the noted values were templated."""
    run, registered, noted = run_noted(tmp_path, MODULES, "registered", hosts, **env)
    return run, json.loads(base64.b64decode(registered)), noted


def test_module_tasks_of_one_host_run_in_the_controller_with_a_worker_s_results(tmp_path: Path) -> None:
    """A command's arguments are templated in the controller's process, where set_fact runs, and
    so are a delegated command's and its condition; a changed task, its handler, a loop, an
    ignored failure, a module's facts and the delegated results come out as Ansible's own
    strategy gives them."""
    mine, registered, noted = modules_run(tmp_path / "mine")
    theirs, expected, their_noted = modules_run(tmp_path / "theirs", ANSIBLE_STRATEGY="linear")
    assert registered == expected
    assert registered["changed"]["changed"] is True and registered["changed"]["stdout"] == "module"
    assert registered["failed"]["failed"] is True and registered["loop"] == ["one", "two"]
    assert registered["stat"][:2] == [True, True]
    # The failed command counts as changed too, as commands do.
    assert mine.recaps == theirs.recaps and [r.changed for r in mine.recaps] == [2], mine.tail()
    assert mine.output.count("handled by the handler") == theirs.output.count("handled by the handler") == 1
    assert registered["delegated"] == ["localhost delegated", False, True]
    assert noted["module"] == noted["set_fact"] == noted["delegated"] == noted["delegated_skipped"], noted
    assert their_noted["module"][0][0] != their_noted["set_fact"][0][0], their_noted
    assert their_noted["delegated"][0][0] != their_noted["set_fact"][0][0], their_noted


def test_module_tasks_of_several_hosts_run_in_the_controller_with_a_worker_s_results(tmp_path: Path) -> None:
    """Through Mitogen, the tasks of two hosts run in the controller's process too, side by side:
    no worker templates their arguments, and what they register, print and count is what
    Ansible's own strategy gives with a worker for each task and host."""
    mine, registered, noted = modules_run(tmp_path / "mine", hosts=TWO_HOSTS)
    theirs, expected, their_noted = modules_run(tmp_path / "theirs", hosts=TWO_HOSTS, ANSIBLE_STRATEGY="linear")
    assert registered == expected
    assert registered["changed"]["stdout"] == "module" and registered["loop"] == ["one", "two"]
    assert mine.recaps == theirs.recaps and [r.changed for r in mine.recaps] == [2, 2], mine.tail()
    assert mine.output.count("handled by the handler") == theirs.output.count("handled by the handler") == 2
    controllers = set(noted["set_fact"])
    assert len(controllers) == 1 and len(noted["set_fact"]) == 2, noted
    for label in ("module", "delegated", "delegated_skipped"):
        assert set(noted[label]) == controllers and len(noted[label]) == 2, noted
    assert len({pid for pid, _ in their_noted["module"]}) == 2, their_noted


def run_on_two_interpreters(
    tmp_path: Path, playbook_text: str, extra_vars: dict[str, str], **env: str
) -> tuple[PlaybookRun, dict[str, list[tuple[int, int]]]]:
    """Runs PLAYBOOK_TEXT on two hosts, this machine under two names, the second with Debian's
    Python: a Python interpreter of its own, as a second machine has (Mitogen keeps one per
    interpreter path). Returns the run and the (process, parent) pairs of its `noted` calls."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"localhost ansible_python_interpreter={sys.executable}\nsecond ansible_python_interpreter=/usr/bin/python3\n"
    )
    log = tmp_path / "noted.log"
    (tmp_path / "filter_plugins").mkdir()
    (tmp_path / "filter_plugins" / "noted.py").write_text(NOTED_FILTER)
    playbook = tmp_path / "two.yml"
    playbook.write_text(playbook_text.replace("noted(log", f"noted('{log}'"))
    run = run_playbook(
        playbook,
        inventory=inventory,
        extra_vars={"ansible_connection": "local", "dir": str(tmp_path), **extra_vars},
        env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), **env},
        timeout=300,
    )
    noted: dict[str, list[tuple[int, int]]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        label, pid, ppid = line.split()
        noted.setdefault(label, []).append((int(pid), int(ppid)))
    return run, noted


RENDEZVOUS = """\
- name: Each host's task waits until the other host's has started
  hosts: all
  gather_facts: false
  vars:
    other: "{{ ansible_play_hosts_all | reject('eq', inventory_hostname) | first }}"
  tasks:
    - name: Start, then wait for the other host to start
      ansible.builtin.shell: "{{ meet }}"
      vars:
        place: "{{ 'first' | noted(log, 'side_by_side') }}"
      changed_when: false
    - name: A task with a timeout, in a worker
      ansible.builtin.command:
        argv: [echo, "{{ 'worker' | noted(log, 'worker') }}"]
      changed_when: false
      timeout: 300
    - name: Start again, then wait for the other host again
      ansible.builtin.shell: "{{ meet }}"
      vars:
        place: "{{ 'second' | noted(log, 'side_by_side') }}"
      changed_when: false
    - name: Say that the hosts met twice
      ansible.builtin.debug:
        msg: "met twice"
"""

# Up to 60 s for the other host to start: a guard against a run that would never end.
MEET = (
    "touch {{ dir }}/{{ place }}-{{ inventory_hostname }}; "
    "for i in $(seq 600); do [ -e {{ dir }}/{{ place }}-{{ other }} ] && exit 0; sleep 0.1; done; exit 1"
)


def test_the_tasks_of_several_hosts_run_side_by_side_in_the_controller(tmp_path: Path) -> None:
    """Two hosts whose tasks each wait until the other's has started: run one after the other,
    the first would give up. Their arguments are templated in the controller's process, which
    forks a worker for a task with a timeout in between, and runs the next task side by side
    again. The second host runs its modules in a Python interpreter of its own, as a second
    machine would (Mitogen keeps one per interpreter path)."""
    run, noted = run_on_two_interpreters(tmp_path, RENDEZVOUS, {"meet": MEET})
    assert run.returncode == 0 and "met twice" in run.output, run.tail()
    assert [r.ok for r in run.recaps] == [4, 4], run.tail()
    controllers = {pid for pid, _ in noted["side_by_side"]}
    assert len(noted["side_by_side"]) == 4 and len(controllers) == 1, noted
    assert [parent for _, parent in noted["worker"]] == [*controllers] * 2, noted
    assert not controllers & {pid for pid, _ in noted["worker"]}, noted


ONE_AT_A_TIME = """\
- name: Tasks that must not run on two hosts at once
  hosts: all
  gather_facts: false
  tasks:
    - name: Fail if another host runs this task now
      ansible.builtin.shell: "{{ alone }}"
      vars:
        place: "{{ 'forks' | noted(log, 'forks') }}"
      changed_when: false
    - name: Fail if another host runs this throttled task now
      ansible.builtin.shell: "{{ alone }}"
      vars:
        place: "{{ 'throttle' | noted(log, 'throttle') }}"
      changed_when: false
      throttle: 1
    - name: Say that no two hosts overlapped
      ansible.builtin.debug:
        msg: "one at a time"
"""

# Half a second inside, so that a second host running the task at the same time would see it.
ALONE = (
    "if ls {{ dir }}/{{ place }}-running-* 2>/dev/null; then exit 1; fi; "
    "touch {{ dir }}/{{ place }}-running-{{ inventory_hostname }}; sleep 0.5; "
    "rm {{ dir }}/{{ place }}-running-{{ inventory_hostname }}"
)


def test_hosts_side_by_side_keep_to_forks_and_throttle(tmp_path: Path) -> None:
    """With `forks = 1` the hosts' tasks run in the controller one after the other, never two at
    once; a task with `throttle` is left to workers, which Ansible's own strategy throttles."""
    run, noted = run_on_two_interpreters(tmp_path, ONE_AT_A_TIME, {"alone": ALONE}, ANSIBLE_FORKS="1")
    assert run.returncode == 0 and "one at a time" in run.output, run.tail()
    controllers = {pid for pid, _ in noted["forks"]}
    assert len(noted["forks"]) == 2 and len(controllers) == 1, noted
    assert {parent for _, parent in noted["throttle"]} == controllers, noted
    assert not controllers & {pid for pid, _ in noted["throttle"]}, noted


def test_the_strategy_found_by_path_runs_hosts_side_by_side_before_the_collection_is_installed(
    tmp_path: Path,
) -> None:
    """Molecule's scenarios find the strategy by path (`strategy_plugins`), and the edge scenario
    installs the collection only later: the strategy then takes its helpers from beside its own
    file. Two hosts still run their module tasks in the controller's process."""
    (tmp_path / "collections").mkdir()
    env = {
        "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections"),
        "ANSIBLE_STRATEGY_PLUGINS": str(ROOT / "plugins" / "strategy"),
        "ANSIBLE_STRATEGY": "mitogen_linear",
    }
    noted = where_conditions_ran(tmp_path / "run", TWO_HOSTS, NOTED, **env)
    controllers = {pid for pid, _ in noted["ran"]}
    assert len(noted["ran"]) == 2 and len(controllers) == 1, noted
    assert {pid for pid, _ in noted["skipped"]} == controllers, noted
