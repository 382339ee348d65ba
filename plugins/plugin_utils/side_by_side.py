"""The tasks of a fleet's hosts run side by side in the controller's process, each in a greenlet.

Ansible runs a task on several hosts at once by forking a worker process for each task and
host. Through Mitogen most of a task's time on a host is a wait for the host's interpreter to
answer, and a forked worker costs the controller far more than the work it does there: on two
cores, about 10 s of the controller's CPU for each extra host of a no-change `site.yml`, nearly
half of it the kernel's (BENCHMARKS.md). Here each host's task runs in the controller's process,
in a greenlet (https://greenlet.readthedocs.io, `greenlet` on PyPI), and hands control back
whenever it waits for a Mitogen reply; the next host's task runs meanwhile, and a task goes on
once its reply is in. Only one greenlet runs at a time and it switches only while it waits for
a reply, never in the middle of Ansible's own work, which threads could not promise
(ansible-core's plugin loading and templating are not thread-safe).

Each greenlet has its own `contextvars` context: Ansible keeps the task, the warnings and the
templating's access tracking there, as it does for each thread.
"""

from __future__ import annotations

import contextvars
import functools
import queue
import time
import typing as t

import greenlet
import mitogen.core
from ansible._internal._templating._access import AnsibleAccessContext


class SideBySide:
    """Runs work in greenlets that give way while they wait for Mitogen replies.

    `start` runs a piece of work until it first waits for a reply; `poll` lets go on whatever
    work has its reply; `drain` waits until all the work is done. All three are called from the
    same greenlet, the one that created this object.
    """

    def __init__(self) -> None:
        self._hub = greenlet.getcurrent()
        self._running: set[greenlet.greenlet] = set()
        # Replies that arrived, put by Mitogen's broker thread.
        self._ready: queue.SimpleQueue[mitogen.core.Receiver] = queue.SimpleQueue()
        # The greenlet that waits on each receiver, and when it stops waiting (a timeout), if ever.
        self._waiting: dict[mitogen.core.Receiver, tuple[greenlet.greenlet, float | None]] = {}

    def start(self, work: t.Callable[[], None], limit: int) -> None:
        """Runs WORK in a greenlet of its own until it first waits for a reply, or ends; first
        waits until fewer than LIMIT pieces of work are running."""
        while len(self._running) >= max(1, limit):
            self._resume_next()
        worker = greenlet.greenlet(work, parent=self._hub)
        context = contextvars.copy_context()
        # The access tracking is the one context value that is a list changed in place: each
        # greenlet needs its own, as each thread gets its own.
        context.run(AnsibleAccessContext._contextvar.set, AnsibleAccessContext())
        worker.gr_context = context
        self._running.add(worker)
        self._switch(worker)

    def poll(self) -> None:
        """Lets every greenlet whose reply is in go on, without waiting for any other."""
        while True:
            try:
                receiver = self._ready.get_nowait()
            except queue.Empty:
                return
            self._resume(receiver)

    def drain(self) -> None:
        """Waits until all the work started here has ended."""
        while self._running:
            self._resume_next()

    def _resume_next(self) -> None:
        """Waits for the next reply (or timeout) and lets its greenlet go on."""
        if not self._waiting:
            raise RuntimeError("greenlets are running but none waits for a Mitogen reply")
        deadlines = [deadline for _, deadline in self._waiting.values() if deadline is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        try:
            receiver = self._ready.get(timeout=timeout)
        except queue.Empty:
            now = time.monotonic()
            for late, (_, deadline) in list(self._waiting.items()):
                if deadline is not None and deadline <= now:
                    self._resume(late, late=True)
            return
        self._resume(receiver)

    def wait(self, receiver: mitogen.core.Receiver, timeout: float | None) -> bool:
        """In one of this object's greenlets, gives way until RECEIVER has a message, is closed or
        TIMEOUT passed; False (wait as usual) outside them, or where someone else is notified."""
        current = greenlet.getcurrent()
        if current not in self._running or receiver.notify is not None:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        self._waiting[receiver] = (current, deadline)
        receiver.notify = self._ready.put
        try:
            arrived = receiver.size() > 0
        except mitogen.core.LatchError:  # closed: the caller's get says so
            arrived = True
        if arrived:  # before the notification was set
            self._ready.put(receiver)
        self._hub.switch()
        return True

    def _resume(self, receiver: mitogen.core.Receiver, late: bool = False) -> None:
        """Lets the greenlet waiting on RECEIVER go on, if it still waits and, unless it is LATE,
        its message is in (a receiver can be put twice, and waited on again after the first)."""
        waiting = self._waiting.get(receiver)
        if waiting is None:
            return
        try:
            if not late and receiver.size() == 0:
                return
        except mitogen.core.LatchError:  # closed: the caller's get says so
            pass
        del self._waiting[receiver]
        receiver.notify = None
        self._switch(waiting[0])

    def _switch(self, worker: greenlet.greenlet) -> None:
        worker.switch()
        if worker.dead:
            self._running.discard(worker)


_RECEIVER_GET = mitogen.core.Receiver.get
_hubs: list[SideBySide] = []


def _get(
    self: mitogen.core.Receiver, timeout: float | None = None, block: bool = True, throw_dead: bool = True
) -> mitogen.core.Message:
    """Receiver.get, giving way to the other greenlets of a SideBySide while the reply is out."""
    if block and any(hub.wait(self, timeout) for hub in _hubs):
        # Resumed: the message is in, the receiver closed or the timeout passed.
        block = False
    return _RECEIVER_GET(self, timeout=timeout, block=block, throw_dead=throw_dead)


@functools.cache
def side_by_side() -> SideBySide:
    """This process's SideBySide, Mitogen's waits for replies routed through it from now on."""
    hub = SideBySide()
    _hubs.append(hub)
    mitogen.core.Receiver.get = _get
    return hub
