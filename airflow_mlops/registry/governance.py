"""Model governance on the MLflow registry: states candidate -> approved -> champion -> archived.

No Airflow import. A version's state lives in its tags (``state``, ``state_by``, ``state_at``,
``state_reason`` and an append-only ``history``); the serving roles live in aliases
(``challenger``, ``champion``, ``previous_champion``). Every change says who, when and why.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from airflow_mlops.exceptions import GovernanceError

STATES = ("candidate", "approved", "rejected", "champion", "archived")
HISTORY_LIMIT = 4500  # MLflow tag values are limited (5000 characters in the SQL stores)


def state(client: Any, name: str, version: str) -> str:
    return str(client.get_model_version(name, version).tags.get("state", "candidate"))


def decision(client: Any, name: str, version: str) -> str | None:
    """``approved`` or ``rejected`` once a person decided (the version's ``state`` tag), else None."""
    current = state(client, name, version)
    return current if current in ("approved", "rejected") else None


def record(client: Any, name: str, version: str, new_state: str, who: str, why: str) -> None:
    """Set the version's state with who, when and why, and append it to its history."""
    if new_state not in STATES:
        raise GovernanceError(f"state must be one of {STATES}, got {new_state!r}")
    if not who or not why:
        raise GovernanceError(
            f"{name} v{version} -> {new_state}: who ({who!r}) and why ({why!r}) are required"
        )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    tags = client.get_model_version(name, version).tags
    history = json.loads(tags.get("history", "[]"))
    history.append({"state": new_state, "by": who, "at": now, "why": why})
    while len(json.dumps(history)) > HISTORY_LIMIT and len(history) > 1:
        history.pop(0)
    for key, value in {
        "state": new_state,
        "state_by": who,
        "state_at": now,
        "state_reason": why[:1000],
        "history": json.dumps(history),
    }.items():
        client.set_model_version_tag(name, version, key, value)


def decide(client: Any, name: str, version: str, approved: bool, who: str, why: str) -> None:
    """Approve or reject a candidate (a decision on another state is refused)."""
    current = state(client, name, version)
    if current != "candidate":
        raise GovernanceError(
            f"{name} v{version} is {current!r}; only a candidate can be "
            f"{'approved' if approved else 'rejected'}"
        )
    record(client, name, version, "approved" if approved else "rejected", who, why)


def alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def set_alias(client: Any, name: str, alias: str, version: str, attempts: int = 5) -> None:
    """Point ``alias`` at ``version``. MLflow's SQL store reads, then inserts, so two writers of the
    same alias at once can hit its unique constraint; the loser retries (the last write wins)."""
    import time

    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            client.set_registered_model_alias(name, alias, version)
            return
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def promote(client: Any, name: str, version: str, who: str, why: str) -> dict[str, Any]:
    """Make an approved version the champion; the one it replaces is archived and remembered.

    The alias moves in one registry call, so readers always see exactly one champion. Promotions
    should be serialised (the reference DAG never overlaps its runs: ``max_active_runs=1``); if
    two overlap, the last alias write wins and every other version left in state ``champion`` is
    archived with the winner named, so no version is left without a state.
    """
    current = state(client, name, version)
    previous = alias_version(client, name, "champion")
    if previous == version:
        return {"champion": version, "previous": None, "changed": False}
    if current != "approved":
        raise GovernanceError(f"{name} v{version} is {current!r}; only an approved version can be promoted")
    client.set_model_version_tag(name, version, "previous_champion", previous or "")
    set_alias(client, name, "champion", version)
    record(client, name, version, "champion", who, why)
    if previous:
        set_alias(client, name, "previous_champion", previous)
        record(client, name, previous, "archived", who, f"replaced by v{version}: {why}")
    winner = alias_version(client, name, "champion")
    for other in client.search_model_versions(f"name = '{name}'"):
        if str(other.version) != winner and other.tags.get("state") == "champion":
            record(
                client,
                name,
                str(other.version),
                "archived",
                who,
                f"superseded by v{winner} (promotions overlapped)",
            )
    return {"champion": winner, "previous": previous, "changed": winner == version}


def rollback(client: Any, name: str, who: str, why: str) -> dict[str, Any]:
    """Restore the champion's predecessor (recorded at its promotion); repeated, it walks further back."""
    current = alias_version(client, name, "champion")
    if current is None:
        raise GovernanceError(f"{name}: there is no champion to roll back")
    previous = client.get_model_version(name, current).tags.get("previous_champion") or None
    if previous is None:
        raise GovernanceError(f"{name}: champion v{current} has no recorded predecessor to roll back to")
    set_alias(client, name, "champion", previous)
    record(client, name, previous, "champion", who, f"rollback from v{current}: {why}")
    record(client, name, current, "archived", who, f"rolled back to v{previous}: {why}")
    before = client.get_model_version(name, previous).tags.get("previous_champion") or None
    if before:
        set_alias(client, name, "previous_champion", before)
    else:
        client.delete_registered_model_alias(name, "previous_champion")
    return {"champion": previous, "rolled_back": current}
