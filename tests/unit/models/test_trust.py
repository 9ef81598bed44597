"""What a model server trusts in a package: its digest as a whole, and which modules it may import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_mlops.exceptions import SpecError
from airflow_mlops.models.package import check_loader, import_network, is_trusted, package_digest


def folder_with(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_digest_changes_with_any_file_and_refuses_links(tmp_path: Path) -> None:
    files = {"config.json": "{}", "model.pt": "weights", "code/net.py": "X = 1\n"}
    base = package_digest(folder_with(tmp_path / "a", files))
    assert package_digest(folder_with(tmp_path / "b", files)) == base  # content, not location
    assert package_digest(folder_with(tmp_path / "c", {**files, "code/net.py": "X = 2\n"})) != base
    assert package_digest(folder_with(tmp_path / "d", {**files, "code/extra.py": ""})) != base
    removed = {k: v for k, v in files.items() if k != "code/net.py"}
    assert package_digest(folder_with(tmp_path / "e", removed)) != base
    # A renamed file is a different package even with the same bytes.
    renamed = {**removed, "code/other.py": "X = 1\n"}
    assert package_digest(folder_with(tmp_path / "f", renamed)) != base
    linked = folder_with(tmp_path / "g", files)
    (linked / "code" / "link.py").symlink_to(tmp_path / "a" / "code" / "net.py")
    with pytest.raises(SpecError, match=r"code/link.py is a symbolic link"):
        package_digest(linked)


@pytest.mark.parametrize(
    ("module", "trusted", "expected"),
    [
        ("airflow_mlops.training.tabular", [], True),
        ("mlflow.sklearn", ["mlflow.sklearn"], True),
        ("mlflow.sklearn.utils", ["mlflow.sklearn"], True),
        ("mlflow.sklearnx", ["mlflow.sklearn"], False),
        ("mlflow.pyfunc.model", ["mlflow.sklearn"], False),
        ("subprocess", [], False),
        ("airflow_mlopsx", [], False),
    ],
)
def test_trust_is_by_module_or_package(module: str, trusted: list[str], expected: bool) -> None:
    assert is_trusted(module, trusted) is expected


def test_a_package_naming_an_untrusted_module_imports_nothing(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "evil_by_name.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Net: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = {"model": "evil_by_name:Net", "init": {}}
    with pytest.raises(
        SpecError, match=r"module 'evil_by_name' is neither carried in the package nor trusted"
    ):
        import_network(config, tmp_path, trusted=[])
    with pytest.raises(SpecError, match=r"module 'subprocess' is neither carried"):
        import_network({"model": "subprocess:run", "init": {"args": ["true"]}}, tmp_path, trusted=["os"])
    assert not marker.exists()
    # Trusted, it is imported (the pipeline's own tasks pass no allowlist at all).
    assert import_network(config, tmp_path, trusted=["evil_by_name"]).__name__ == "Net"
    assert marker.exists()


def test_carried_code_must_be_the_named_modules_file_inside_the_code_folder(tmp_path: Path) -> None:
    (tmp_path / "outside.py").write_text("class Net: pass\n")
    package = tmp_path / "package"
    (package / "code" / "nets").mkdir(parents=True)
    (package / "code" / "nets" / "mine.py").write_text("class Net: pass\n")
    with pytest.raises(SpecError, match=r"code '../../outside.py' must be a file inside code/"):
        import_network({"model": "outside:Net", "code": "../../outside.py"}, package, trusted=[])
    with pytest.raises(
        SpecError, match=r"code 'nets/mine.py' is not the file of the network's module 'subprocess'"
    ):
        import_network({"model": "subprocess:run", "code": "nets/mine.py"}, package, trusted=[])
    assert (
        import_network({"model": "nets.mine:Net", "code": "nets/mine.py"}, package, trusted=[]).__name__
        == "Net"
    )


@pytest.mark.parametrize(
    ("loader", "trusted", "message"),
    [
        ("mlflow.pyfunc.model", ["mlflow.sklearn"], r"its loader 'mlflow.pyfunc.model' is not trusted"),
        ("mlflow.sklearn", [], r"its loader 'mlflow.sklearn' is not trusted"),
        ("", [], r"its loader '' is not trusted"),
    ],
)
def test_an_mlflow_flavor_loads_only_with_a_trusted_loader(
    loader: str, trusted: list[str], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        check_loader({"python_function": {"loader_module": loader}}, "model 'm'", trusted)
    check_loader({"python_function": {"loader_module": loader}}, "model 'm'", None)  # tasks: no allowlist
    with pytest.raises(SpecError, match=r"has no python_function flavor"):
        check_loader({"sklearn": {}}, "model 'm'", None)


def test_config_is_json_for_the_digest(tmp_path: Path) -> None:
    """The digest reads bytes: a reformatted config.json is a changed package."""
    folder = folder_with(tmp_path / "a", {"config.json": json.dumps({"a": 1})})
    before = package_digest(folder)
    (folder / "config.json").write_text(json.dumps({"a": 1}, indent=2))
    assert package_digest(folder) != before
