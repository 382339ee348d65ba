"""The greenlet hub of the strategy (plugins/plugin_utils/side_by_side.py), with real Mitogen
receivers of an in-process router. Each check runs in a Python process of its own, since the hub
routes Mitogen's Receiver.get through itself for the whole process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from mlops_testkit import ROOT

SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys

    import mitogen.core
    import mitogen.master

    spec = importlib.util.spec_from_file_location("side_by_side", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hub = module.side_by_side()

    broker = mitogen.master.Broker()
    router = mitogen.master.Router(broker)
    got = {}
    receivers = {name: mitogen.core.Receiver(router) for name in ("one", "two")}

    def work(name):
        def run():
            # Two messages on the same receiver, as a stream of replies would come.
            got[name] = [receivers[name].get().unpickle() for _ in range(2)]
        return run

    try:
        hub.start(work("one"), limit=10)
        hub.start(work("two"), limit=10)
        started = sorted(name for name in receivers if name not in got)
        # A duplicate notification of a receiver whose message is not in: nobody may go on.
        hub._ready.put(receivers["one"])
        hub.poll()
        receivers["two"].to_sender().send("two-a")
        receivers["one"].to_sender().send("one-a")
        receivers["one"].to_sender().send("one-b")
        receivers["two"].to_sender().send("two-b")
        hub.drain()
        # Outside the hub's greenlets, Receiver.get waits as Mitogen's always did.
        outside = mitogen.core.Receiver(router)
        outside.to_sender().send("outside")
        plain = outside.get().unpickle()
    finally:
        broker.shutdown()
        broker.join()
    print(json.dumps({"started": started, "got": got, "plain": plain}))
    """
)


def test_greenlets_wait_for_their_own_replies_and_ignore_stale_notifications() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "plugins/plugin_utils/side_by_side.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # Both pieces of work started and gave way at their first wait, neither blocking the other.
    assert result["started"] == ["one", "two"]
    assert result["got"] == {"one": ["one-a", "one-b"], "two": ["two-a", "two-b"]}
    assert result["plain"] == "outside"
