"""Process groups and trees on Linux, from /proc (no Airflow import): what the demo, the standalone
tests and the scale-out stack use to stop what they started, children left behind included."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def processes() -> dict[int, tuple[str, int, int]]:
    """Every process now: pid -> (state, parent pid, process group). Zombies have state ``Z``."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid, pgrp = stat.read_text().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):  # exited meanwhile
            continue
        found[int(stat.parent.name)] = (state, int(ppid), int(pgrp))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, which only waits to be reaped, does not)."""
    entry = processes().get(pid)
    return entry is not None and entry[0] != "Z"


def group_alive(pgid: int) -> bool:
    """Whether a process of the group runs (zombies do not count)."""
    return any(pgrp == pgid and state != "Z" for state, _, pgrp in processes().values())


def process_tree(pgid: int) -> list[int]:
    """The processes of group ``pgid`` and every descendant of them, in whatever group: a task
    runner or torchrun starts a group of its own."""
    table = processes()
    tree = {pid for pid, (_, _, pgrp) in table.items() if pgrp == pgid}
    for pid in table:
        ancestor = table[pid][1]
        while ancestor > 1 and ancestor not in tree:
            ancestor = table[ancestor][1] if ancestor in table else 0
        if ancestor in tree:
            tree.add(pid)
    return sorted(tree)


def kill_tree(pgid: int) -> None:
    """SIGKILL the group and all its descendants at once, as a lost machine would end them."""
    for pid in process_tree(pgid):
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.kill(pid, signal.SIGKILL)


def stop_process_group(pgid: int, timeout: float = 30.0) -> bool:
    """TERM the process group, then KILL whatever of it still runs after ``timeout``: the leader, or
    a child it left behind (an ``airflow standalone`` that exits before its scheduler does). False
    when the group was already gone."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and group_alive(pgid):
        time.sleep(0.2)
    if group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    return True


def stop_group(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Stop a process started with ``start_new_session=True`` and its children: TERM, then KILL."""
    stop_process_group(process.pid, timeout)
    process.wait(timeout=timeout)
