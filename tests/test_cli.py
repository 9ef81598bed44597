"""The commands that people run by hand: `airflow-mlops infer-suite` and init-home's options, and the
development tooling's `python -m devtools land --corrupt`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from airflow_mlops.cli import main
from airflow_mlops.data.suites import load_suite
from devtools.__main__ import main as devtools_main
from flights.source import CORRUPTIONS, check_landing_frame
from tests.partitions import month_frame


def test_infer_suite_writes_a_suite_and_a_reference_profile(tmp_path: Path, capsys) -> None:
    partition = tmp_path / "2013-01.parquet"
    month_frame("weather", 1).to_parquet(partition, index=False)

    main(
        [
            "infer-suite",
            "--partition",
            str(partition),
            "--name",
            "weather_raw",
            "--out",
            str(tmp_path / "w.yaml"),
            "--key",
            "origin",
            "--key",
            "time_hour",
            "--profile-out",
            str(tmp_path / "w.profile.json"),
        ]
    )

    suite = load_suite(tmp_path / "w.yaml")
    assert suite.name == "weather_raw" and suite.meta["inferred_from"] == partition.as_uri()
    assert {
        "type": "expect_compound_columns_to_be_unique",
        "kwargs": {"column_list": ["origin", "time_hour"]},
    } in suite.expectations
    assert json.loads((tmp_path / "w.profile.json").read_text())["rows"] == 2226
    assert "w.yaml: " in capsys.readouterr().out


def test_land_corrupt_writes_a_month_that_passes_the_landing_check_but_not_validation(tmp_path: Path) -> None:
    devtools_main(["land", "--month", "3", "--dir", str(tmp_path), "--corrupt"])

    frame = pd.read_parquet(tmp_path / "flights_2013_03.parquet")
    assert check_landing_frame("landed", frame) == 3
    for column, value, every in CORRUPTIONS:
        assert (frame[column] == value).sum() == len(range(0, len(frame), every))


def test_the_home_config_turns_openlineage_on_with_a_file_transport_and_keeps_other_options(
    tmp_path: Path,
) -> None:
    import configparser
    import json

    from airflow_mlops.cli import write_airflow_cfg

    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "airflow.cfg").write_text("[webserver]\nexpose_config = True\n")
    cfg = write_airflow_cfg(tmp_path / "home", tmp_path / "data", tmp_path / "dags")
    config = configparser.ConfigParser(interpolation=None)
    config.read(cfg)
    transport = json.loads(config.get("openlineage", "transport"))
    assert transport == {
        "type": "file",
        "log_file_path": str(tmp_path / "data" / "lineage" / "events.jsonl"),
        "append": True,
    }
    assert config.getboolean("openlineage", "execute_in_thread")
    assert config.get("webserver", "expose_config") == "True"


def test_a_home_approves_nothing_by_itself_unless_asked_and_takes_any_mlops_option(tmp_path: Path) -> None:
    import configparser

    from airflow_mlops.cli import write_airflow_cfg

    def mlops(**kwargs) -> dict[str, str]:
        config = configparser.ConfigParser(interpolation=None)
        config.read(write_airflow_cfg(tmp_path / "home", tmp_path / "data", tmp_path / "dags", **kwargs))
        return dict(config["mlops"])

    plain = mlops()
    assert plain["auto_approve"] == "False" and "source_conn_id" not in plain
    assert plain["feature_repo"] == str(tmp_path / "feature_repo")
    asked = mlops(auto_approve=True, feature_repo=tmp_path / "repo", mlops={"source_conn_id": "crm"})
    assert (asked["auto_approve"], asked["feature_repo"], asked["source_conn_id"]) == (
        "True",
        str(tmp_path / "repo"),
        "crm",
    )


def test_init_home_refuses_an_option_without_a_value(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"--option must be KEY=VALUE, got 'source_conn_id'"):
        main(["init-home", "--home", str(tmp_path), "--data-dir", str(tmp_path), "--dags-folder", str(tmp_path),
              "--option", "source_conn_id"])  # fmt: skip


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--batch-max-rows", "-1"],
            r"--batch-\*: batching: max_rows must be a whole number >= 0 \(0: off\), got -1",
        ),
        (["--batch-max-wait-ms", "5000"], r"max_wait_ms must be a number within \[0, 1000\], got 5000"),
        (["--keep-alive-s", "0"], r"--keep-alive-s must be 1 or more seconds, got 0"),
    ],
)
def test_serve_refuses_bad_batching_before_it_starts(tmp_path: Path, option: list[str], message: str) -> None:
    from airflow_mlops.cli import main

    with pytest.raises(SystemExit, match=message):
        main(["serve", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *option])


def test_serve_refuses_a_code_path_that_is_not_a_folder(tmp_path: Path) -> None:
    from airflow_mlops.cli import main

    with pytest.raises(SystemExit, match=r"--code-path '/nowhere/project' is not a folder"):
        main(
            [
                "serve",
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'mlflow.db'}",
                "--code-path",
                "/nowhere/project",
            ]
        )
