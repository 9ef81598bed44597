"""The monitors on real 2013 data: winter against summer weather drifts, a month against its own
bootstrap samples does not; schema anomalies; serving rows from the request log; performance
from labels joined by prediction id."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.monitoring.monitors import (
    MonitoringError,
    drift_report,
    join_labels,
    performance_report,
    prediction_drift,
    serving_rows,
)
from airflow_mlops.monitoring.statistics import profile_frame
from tests.partitions import month_frame

WEATHER = ["temp", "dewp", "humid", "wind_speed", "pressure", "visib", "origin"]


def test_winter_against_summer_weather_is_drift() -> None:
    january, july = month_frame("weather", 1)[WEATHER], month_frame("weather", 7)[WEATHER]
    report = drift_report(january, july)
    by_column = {c["column"]: c for c in report["columns"]}
    assert {"temp", "dewp"} <= set(report["drifted"]) and by_column["temp"]["value"] > 1.0
    assert by_column["temp"]["ks"] > 0.8 and "origin" not in report["drifted"]  # the same three airports
    assert report["reference_rows"] == len(january) and report["score"] == by_column["temp"]["value"]


def test_bootstrap_samples_of_one_month_are_not_drift() -> None:
    january = month_frame("weather", 1)[WEATHER]
    reference = profile_frame(january)  # a stored profile stands in for the reference rows
    for seed in range(3):
        sample = january.sample(n=len(january), replace=True, random_state=seed)
        report = drift_report(reference, sample)
        assert report["drifted"] == [] and report["score"] < 0.05, report


def test_small_samples_of_a_many_valued_column_are_not_drift_but_a_moved_share_is() -> None:
    # ~100 destinations, top 50 kept per profile: a 1,500-row sample has a different top 50 and a
    # Jensen-Shannon distance over 0.1 from sampling alone; aligned tables and the chi-square test
    # keep that from counting as drift.
    flights = month_frame("flights", 1)[["dest"]]
    for seed in range(3):
        report = drift_report(flights, flights.sample(1500, random_state=seed))
        (dest,) = report["columns"]
        assert not dest["drifted"] and dest["p_value"] > 0.01 and dest["new_categories"] == [], dest
    moved = flights.sample(1500, random_state=0)
    moved.loc[moved.index[:600], "dest"] = "ORD"
    (dest,) = drift_report(flights, moved)["columns"]
    assert dest["drifted"] and dest["value"] > 0.1 and dest["p_value"] < 1e-6


def test_schema_anomalies_are_reported_new_category_and_missing_column() -> None:
    flights = month_frame("flights", 1)[["carrier", "distance", "dep_delay"]]
    current = flights.drop(columns=["dep_delay"]).copy()
    current.loc[current.index[:500], "carrier"] = "ZZ"
    report = drift_report(flights, current, columns=["carrier", "distance", "dep_delay"])
    by_column = {c["column"]: c for c in report["columns"]}
    assert by_column["dep_delay"]["metric"] == "missing" and by_column["dep_delay"]["drifted"]
    assert by_column["carrier"]["new_categories"] == ["ZZ"]
    with pytest.raises(KeyError, match=r"columns \['tail'\] are not in the reference profile"):
        drift_report(flights, current, columns=["tail"])
    with pytest.raises(MonitoringError, match="the current sample has no rows"):
        drift_report(flights, current.iloc[0:0])


def test_serving_rows_unpack_the_features_the_model_saw() -> None:
    log = pd.DataFrame(
        {
            "prediction_id": ["a", "b"],
            "probability": [0.2, 0.7],
            "variant": ["main", "main"],
            "features": [
                json.dumps({"carrier": "UA", "distance": 1400}),
                json.dumps({"carrier": "AA", "distance": None}),
            ],
        }
    )
    rows = serving_rows(log)
    assert list(rows.columns) == ["carrier", "distance", "prediction_id", "probability", "variant"]
    assert rows["carrier"].tolist() == ["UA", "AA"] and rows["prediction_id"].tolist() == ["a", "b"]
    assert rows["distance"][0] == 1400 and np.isnan(rows["distance"][1])  # null in the request, NaN here
    with pytest.raises(MonitoringError, match="a features value is not a JSON object"):
        serving_rows(log.assign(features=["{not json", "{}"]))


def test_prediction_drift_separates_shifted_scores() -> None:
    rng = np.random.default_rng(0)
    base = rng.beta(2, 8, 20_000)
    assert prediction_drift(base, rng.beta(2, 8, 20_000))["psi"] < 0.02
    shifted = prediction_drift(base, rng.beta(4, 6, 20_000))
    assert shifted["psi"] > 0.5 and shifted["current_mean"] > shifted["reference_mean"]
    with pytest.raises(MonitoringError, match="needs predictions on both sides, got 20000 and 0"):
        prediction_drift(base, [])


def test_performance_joins_labels_by_prediction_id_and_counts_what_did_not_match() -> None:
    rng = np.random.default_rng(1)
    labels_true = rng.integers(0, 2, 2000)
    probabilities = np.clip(labels_true * 0.6 + rng.random(2000) * 0.4, 0, 1)
    predictions = pd.DataFrame(
        {"prediction_id": [f"p{i}" for i in range(2000)], "probability": probabilities}
    )
    labels = pd.DataFrame(
        {
            "prediction_id": [f"p{i}" for i in range(100, 2000)] + ["stranger"],
            "label": [*labels_true[100:], 1],
        }
    )
    joined = join_labels(predictions, labels)
    assert len(joined) == 1900 and joined.attrs == {"unmatched_labels": 1, "unlabeled_predictions": 100}
    report = performance_report(joined)
    assert report["labelled"] == 1900 and report["auc"] > 0.95 and report["unlabeled_predictions"] == 100
    with pytest.raises(MonitoringError, match=r"prediction ids \['p5'\] have more than one label"):
        join_labels(predictions, pd.DataFrame({"prediction_id": ["p5", "p5"], "label": [0, 1]}))
    with pytest.raises(MonitoringError, match=r"labels: columns \['label'\] are missing"):
        join_labels(predictions, pd.DataFrame({"prediction_id": ["p5"], "outcome": [1]}))
    with pytest.raises(MonitoringError, match="label is null for 1 prediction"):
        join_labels(predictions, pd.DataFrame({"prediction_id": ["p5"], "label": [None]}))
    with pytest.raises(MonitoringError, match="label must be 0 or 1"):
        join_labels(predictions, pd.DataFrame({"prediction_id": ["p5"], "label": [3]}))
    with pytest.raises(MonitoringError, match="no prediction has a label yet"):
        performance_report(join_labels(predictions, pd.DataFrame({"prediction_id": ["x"], "label": [1]})))


def test_breach_rules_give_their_reasons_with_the_numbers() -> None:
    from airflow_mlops.monitoring.monitors import drift_breaches, performance_breaches

    report = {
        "drifted": ["temp"],
        "columns": [
            {"column": "temp", "metric": "psi", "value": 0.31, "threshold": 0.2, "drifted": True},
            {"column": "wind", "metric": "psi", "value": 0.05, "threshold": 0.2, "drifted": False},
        ],
    }
    assert drift_breaches(report, None, min_drifted=1, prediction_psi_threshold=0.2) == [
        "1 feature(s) drifted (at least 1 breach): temp psi=0.310 > 0.2"
    ]
    assert drift_breaches(report, {"psi": 0.1}, min_drifted=2, prediction_psi_threshold=0.2) == []
    assert drift_breaches(report, {"psi": 0.5}, min_drifted=2, prediction_psi_threshold=0.2) == [
        "predictions drifted: PSI 0.500 > 0.2"
    ]
    overall = {"auc": float("nan"), "calibration_error": 0.02, "labelled": 40}
    assert performance_breaches(overall, min_auc=0.6, max_calibration_error=0.05) == [
        "auc nan < 0.6 on 40 labelled predictions"  # an AUC that cannot be computed breaches
    ]
    assert performance_breaches({**overall, "auc": 0.7}, min_auc=0.6, max_calibration_error=0.01) == [
        "calibration_error 0.0200 > 0.01 on 40 labelled predictions"
    ]
    assert performance_breaches(overall, min_auc=None, max_calibration_error=None) == []
    regression = {"rmse": 12.5, "r2": 0.4, "labelled": 9}
    assert performance_breaches(regression, bounds={"rmse": {"max": 10}, "r2": {"min": 0.3}}) == [
        "rmse 12.5000 > 10 on 9 labelled predictions"
    ]
    assert performance_breaches(regression, bounds={"mae": {"max": 1}}) == [
        "mae nan > 1 on 9 labelled predictions"  # a metric the report lacks breaches
    ]


def test_labels_keyed_by_a_feature_become_labels_by_prediction() -> None:
    from airflow_mlops.monitoring.monitors import labels_by_prediction

    served = pd.DataFrame({"prediction_id": ["p1", "p2", "p3"], "flight_id": [10, 11, 12]})
    labels = pd.DataFrame({"flight_id": [11, 12, 99], "label": [1, 0, 1]})
    joined = labels_by_prediction(
        served, labels, label_key="flight_id", label_column="label", source="l.parquet"
    )
    assert joined.to_dict("records") == [
        {"prediction_id": "p2", "label": 1},
        {"prediction_id": "p3", "label": 0},
    ]
    unlabelled = labels.rename(columns={"label": "y"})
    with pytest.raises(MonitoringError, match=r"labels l.parquet: no column 'label'"):
        labels_by_prediction(
            served, unlabelled, label_key="flight_id", label_column="label", source="l.parquet"
        )
    with pytest.raises(MonitoringError, match=r"the requests carry no 'tail'"):
        labels_by_prediction(
            served, labels.assign(tail=1), label_key="tail", label_column="label", source="l"
        )
    with pytest.raises(
        MonitoringError, match=r"flight_id values \[11\] are labelled more than once \(1 in all"
    ):
        labels_by_prediction(
            served,
            pd.concat([labels, labels.head(1)]),
            label_key="flight_id",
            label_column="label",
            source="l",
        )


def test_a_multiclass_window_needs_its_class_probabilities_and_one_set_of_classes() -> None:
    def output(**probabilities: float) -> str:
        return json.dumps(
            {"label": max(probabilities, key=probabilities.__getitem__), "probabilities": probabilities}
        )

    predictions = pd.DataFrame(
        {
            "prediction_id": ["a", "b", "c"],
            "probability": [0.7, 0.6, 0.8],
            "output": [output(x=0.7, y=0.3), output(x=0.4, y=0.6), output(x=0.8, y=0.2)],
        }
    )
    labels = pd.DataFrame({"prediction_id": ["a", "b", "c"], "label": ["x", "y", "y"]})
    report = performance_report(join_labels(predictions, labels, task="multiclass"), task="multiclass")
    assert report["accuracy"] == pytest.approx(2 / 3) and report["labelled"] == 3

    older = predictions.assign(output=[None, *predictions["output"][1:]])
    with pytest.raises(MonitoringError, match=r"1 labelled prediction\(s\) have no class probabilities"):
        performance_report(join_labels(older, labels, task="multiclass"), task="multiclass")
    mixed = predictions.assign(output=[output(x=0.7, z=0.3), *predictions["output"][1:]])
    with pytest.raises(MonitoringError, match=r"mixes answers over different classes"):
        performance_report(join_labels(mixed, labels, task="multiclass"), task="multiclass")


def test_the_request_log_keeps_a_multiclass_answer_and_nothing_for_the_others() -> None:
    from airflow_mlops.models.package import logged_output

    assert logged_output("binary", 0.3) is None and logged_output("regression", 12.0) is None
    answer = json.loads(logged_output("multiclass", np.array([0.2, 0.8]), ["early", "late"]) or "")
    assert answer == {"label": "late", "probabilities": {"early": 0.2, "late": 0.8}}


def test_attribution_drift_flags_the_feature_whose_importance_moves_and_not_the_others() -> None:
    from airflow_mlops.monitoring.monitors import attribution_breaches, attribution_drift

    rng = np.random.default_rng(0)

    def attributions(weight_b: float, n: int = 800) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "a": rng.normal(0, 1.0, n),
                "b": rng.normal(0, weight_b, n),
                "c": rng.normal(0, 0.5, n),
            }
        )

    same = attribution_drift(attributions(1.0), attributions(1.0))
    assert same["drifted"] == [] and same["score"] < 0.05 and attribution_breaches(same) == []
    assert sum(c["reference_share"] for c in same["columns"]) == pytest.approx(1.0)
    moved = attribution_drift(attributions(1.0), attributions(3.0))
    assert moved["drifted"] == ["b"]  # a and c lose share, but their own attributions did not move
    b = next(c for c in moved["columns"] if c["column"] == "b")
    assert b["share_change"] > 0.2 and b["psi"] > 0.25 and moved["columns"][0]["column"] == "b"
    (reason,) = attribution_breaches(moved)
    assert reason.startswith("attribution of 1 feature(s) drifted: b share 0.39") and "-> 0.66" in reason
    with pytest.raises(MonitoringError, match=r"features \['c'\] are attributed on one side only"):
        attribution_drift(attributions(1.0), attributions(1.0).drop(columns=["c"]))
    with pytest.raises(MonitoringError, match="0 served rows attributed"):
        attribution_drift(attributions(1.0), attributions(1.0).head(0))
