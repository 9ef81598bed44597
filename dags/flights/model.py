"""The reference model for flights: the generic tabular data module and MLP on the flights columns.

No Airflow import. ``FlightDataModule`` is :class:`~airflow_mlops.training.tabular.TabularDataModule`
with the flights feature spec (``FLIGHTS``): it reads a training set (``FeastTrainingDatasetOperator``'s
manifest) and learns the preprocessing on the training split only. ``FlightDelayModel`` is
:class:`~airflow_mlops.training.tabular.TabularMLP`: it embeds carrier, origin and destination,
standardises the numeric features with the stored statistics and predicts the probability that a
flight arrives over 15 minutes late.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_mlops.models.features import FeatureSpec
from airflow_mlops.training.tabular import TabularDataModule, TabularMLP, load_model
from airflow_mlops.training.tabular import fit_preprocessing as _fit
from airflow_mlops.training.tabular import transform as _transform

LABEL = "is_delayed"
CATEGORICAL = ("carrier", "origin", "dest")
NUMERIC = (
    "distance",
    "sched_dep_time",
    "sched_arr_time",
    "hour",
    "month",
    "day",
    "temp",
    "dewp",
    "humid",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
    "carrier_flights_7d",
    "carrier_delay_rate_7d",
    "carrier_mean_arr_delay_7d",
    "carrier_flights_30d",
    "carrier_delay_rate_30d",
    "carrier_mean_arr_delay_30d",
    "route_flights_30d",
    "route_delay_rate_30d",
    "route_mean_arr_delay_30d",
    "plane_year",
    "plane_seats",
    "plane_engines",
)

FLIGHTS = FeatureSpec(label=LABEL, task="binary", numeric=NUMERIC, categorical=CATEGORICAL)


def fit_preprocessing(frame: Any) -> dict[str, Any]:
    """The flights columns' statistics on a training split (see ``tabular.fit_preprocessing``)."""
    return _fit(frame, FLIGHTS)


def transform(frame: Any, preprocessing: Mapping[str, Any]) -> tuple[Any, Any]:
    """Raw flight rows -> (numeric tensor, category index tensor), the network's two inputs."""
    tensors = _transform(frame, preprocessing)
    return tensors["numeric"], tensors["categorical"]


class FlightDataModule(TabularDataModule):
    """The splits of a flights training set (``FLIGHTS``: 26 numeric, 3 categorical, ``is_delayed``)."""

    default_features = FLIGHTS


class FlightDelayModel(TabularMLP):
    """The flights network: :class:`TabularMLP` (binary by default), kept under its registered name."""


__all__ = ["FLIGHTS", "FlightDataModule", "FlightDelayModel", "fit_preprocessing", "load_model", "transform"]
