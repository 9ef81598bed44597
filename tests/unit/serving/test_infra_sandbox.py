"""A sandbox server that cannot start fails infra validation with its exit code and log, at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from airflow_mlops.exceptions import ModelServerError
from airflow_mlops.serving.infra import Sandbox


def test_a_sandbox_that_exits_is_reported_with_its_exit_code_and_log(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the server's state folder should go")
    sandbox = Sandbox(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}", {}, ())
    started = time.monotonic()
    with pytest.raises(
        ModelServerError, match=r"(?s)the sandbox server exited with [1-9]\d*: .*FileExistsError.*state"
    ):
        sandbox.wait_ready(timeout=120)
    assert time.monotonic() - started < 60  # it did not wait out the timeout
    assert sandbox.process.returncode not in (None, 0)
