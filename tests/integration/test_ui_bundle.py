"""The React views' bundle: built from a clean copy of ``ui/`` with its lock file by the one
command ``make ui`` runs, it is byte for byte the bundle committed in the package, and the wheel
ships it (users install no Node.js)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "airflow_mlops" / "plugins" / "static" / "mlops.js"


def test_the_bundle_builds_from_a_clean_checkout_into_what_the_package_ships(tmp_path: Path) -> None:
    if not (shutil.which("npm") and shutil.which("node")):
        pytest.skip("node and npm are not installed: the bundle cannot be rebuilt here")
    ui = tmp_path / "ui"
    shutil.copytree(ROOT / "ui", ui, ignore=shutil.ignore_patterns("node_modules"))
    (tmp_path / "airflow_mlops" / "plugins" / "static").mkdir(parents=True)
    make_ui = next(
        line.strip()
        for line in (ROOT / "Makefile").read_text().splitlines()
        if line.strip().startswith("cd ui &&")
    )
    built = subprocess.run(make_ui, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    fresh = tmp_path / "airflow_mlops" / "plugins" / "static" / "mlops.js"
    assert fresh.read_bytes() == BUNDLE.read_bytes(), (
        "airflow_mlops/plugins/static/mlops.js is not what ui/ builds: run `make ui` and commit the bundle"
    )
    # Airflow looks each view up by its name on globalThis: the bundle registers every one.
    from airflow_mlops.plugins import REACT_APPS

    names = {app["name"] for app in REACT_APPS}
    assert all(f"{name}:" in fresh.read_text() for name in names), names


def test_the_wheel_ships_the_bundle_and_its_icon(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("airflow_mlops-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("airflow_mlops/plugins/static/mlops.js")
        assert "airflow_mlops/plugins/static/icon.svg" in archive.namelist()
    assert shipped == BUNDLE.read_bytes()
