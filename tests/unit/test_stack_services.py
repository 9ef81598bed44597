"""One service of a recorded stack: stopped as a lost machine (its whole process tree), started
again, restarted by the stack when it exits; bad names refused. Real processes, no stack servers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.processes import alive, group_alive, process_tree, processes
from devtools.stack import StackError, _start, start_service, stop_service


def record(root: Path, commands: dict[str, list[str]]) -> dict:
    (root / "logs").mkdir(parents=True, exist_ok=True)
    pids = {
        name: _start(root, name, command, {"PATH": "/usr/bin:/bin"}) for name, command in commands.items()
    }
    stack = {
        "root": str(root),
        "ports": {},
        "pids": pids,
        "commands": commands,
        "extra_env": {name: {} for name in commands},
    }
    (root / "stack.json").write_text(json.dumps(stack))
    (root / "stack.env").write_text("")
    return stack


def wait(check, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_a_killed_service_takes_its_whole_tree_with_it_and_starts_again(tmp_path: Path) -> None:
    # A "worker" whose child escapes into a session of its own, as a task runner or torchrun does.
    stack = record(tmp_path, {"worker": ["/bin/sh", "-c", "setsid sleep 300 & sleep 300"]})
    pgid = stack["pids"]["worker"]
    assert wait(lambda: len(process_tree(pgid)) >= 3)
    tree = process_tree(pgid)
    escaped = [pid for pid in tree if processes()[pid][2] != pgid]
    assert escaped, f"the setsid child should be in another group: {tree}"
    with pytest.raises(StackError, match="'worker' is running"):
        start_service(tmp_path, "worker")
    stop_service(tmp_path, "worker", kill=True)
    assert wait(lambda: not any(alive(pid) for pid in tree))
    start_service(tmp_path, "worker")
    again = json.loads((tmp_path / "stack.json").read_text())["pids"]["worker"]
    assert again != pgid and group_alive(again)
    stop_service(tmp_path, "worker")
    assert not group_alive(again)


def test_a_supervised_service_that_exits_is_started_again(tmp_path: Path) -> None:
    stack = record(tmp_path, {"scheduler": ["/bin/sh", "-c", "echo started; exit 3"]})
    log = tmp_path / "logs" / "scheduler.log"
    assert wait(lambda: log.read_text().count("started") >= 2, timeout=15), log.read_text()
    assert "[stack] /bin/sh exited with 3; starting it again in 5 s" in log.read_text()
    stop_service(tmp_path, "scheduler")
    assert not group_alive(stack["pids"]["scheduler"])


def test_unknown_services_and_missing_stacks_are_refused(tmp_path: Path) -> None:
    record(tmp_path, {"worker": ["/bin/sh", "-c", "sleep 300"]})
    try:
        for action in (stop_service, start_service):
            with pytest.raises(StackError, match=r"service 'wroker' is not recorded; services: \['worker'\]"):
                action(tmp_path, "wroker")
    finally:
        stop_service(tmp_path, "worker")
    with pytest.raises(StackError, match="no stack recorded in"):
        stop_service(tmp_path / "elsewhere", "worker")
    done = subprocess.run(
        [sys.executable, "-m", "devtools", "stack", "stop", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode != 0 and "give --service NAME" in done.stderr
