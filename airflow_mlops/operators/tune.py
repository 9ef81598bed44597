"""Hyperparameter tuning as Airflow tasks: an Optuna study in RDB storage, one mapped task per trial."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from airflow.sdk import BaseOperator

from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.hooks.mlflow import MlflowHook, MlflowOperatorMixin
from airflow_mlops.operators.train import LightningTrainOperator
from airflow_mlops.xcom import StudyResult, TrialResult

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_PRUNER = {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 1}


def storage_url(optuna_conn_id: str) -> str:
    """The Optuna RDB storage URL of a connection: ``sqlite`` (host: the database file) or
    ``postgres`` (host, port, schema: the database, login, password). The URL, password included,
    stays in this process and the training processes' environment; it is never logged."""
    from urllib.parse import quote

    from airflow.sdk import Connection

    conn = Connection.get(optuna_conn_id)
    if conn.conn_type == "sqlite":
        if not conn.host:
            raise MLOpsConfigError(
                f"connection {optuna_conn_id!r}: a sqlite storage needs host = the file's path"
            )
        Path(conn.host).parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{conn.host}"
    if conn.conn_type in ("postgres", "postgresql"):
        auth = quote(conn.login or "", safe="")
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        port = f":{conn.port}" if conn.port else ""
        return (
            f"postgresql+psycopg2://{auth + '@' if auth else ''}{conn.host}{port}/{conn.schema or 'optuna'}"
        )
    raise MLOpsConfigError(
        f"connection {optuna_conn_id!r}: an Optuna storage is a 'sqlite' or 'postgres' connection, "
        f"got conn_type {conn.conn_type!r}"
    )


def _optuna() -> Any:
    """Optuna, its log lines sent through Airflow's task log (its own handler writes to stderr,
    which the task log records at level error)."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    return optuna


def _load_study(name: str, url: str) -> Any:
    optuna = _optuna()
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return optuna.load_study(study_name=name, storage=url)
    except KeyError:
        raise AirflowFailException(
            f"study_name {name!r}: no such Optuna study in the storage (CreateStudyOperator creates it)"
        ) from None


class CreateStudyOperator(MlflowOperatorMixin, BaseOperator):
    """Create an Optuna study (or find it again on a retry) and return one slot per trial for ``.expand()``.

    The search space is checked here (types, bounds, keys) and kept in the study's user attributes
    with the metric, so every trial samples the same space. With an MLflow tracking URI, a parent
    run is opened for the study; the trials' runs nest under it.

    :param study_name: the study (templated; one per DAG run in the reference DAG).
    :param search_space: hyperparameter -> ``{"type": "int"|"float"|"categorical", ...}``
        (see ``airflow_mlops.training.tuning``).
    :param n_trials: how many trials (mapped tasks) to run.
    :param metric: the trial's objective, a key of the training result's metrics (``val_loss``).
    :param direction: ``minimize`` or ``maximize``.
    :param optuna_conn_id: the connection of the study's storage (``sqlite`` or ``postgres``; its
        password never reaches a file or a log).
    :param sampler_seed: seed of the TPE sampler.
    :param mlflow_conn_id, mlflow_experiment: where the parent run goes (None: no MLflow; the
        experiment defaults to the DAG's id, as ``TuneTrialOperator``'s does: the trials are nested
        runs of the study's run, so give both the same experiment).

    XCom: ``[0, 1, ..., n_trials - 1]``, the trial slots.
    """

    required_extra: ClassVar[str | None] = "training"

    template_fields: Sequence[str] = ("study_name",)
    ui_color = "#fff4d6"

    def __init__(
        self,
        *,
        study_name: str,
        search_space: Mapping[str, Any],
        n_trials: int,
        metric: str = "val_loss",
        direction: Literal["minimize", "maximize"] = "minimize",
        optuna_conn_id: str = "optuna_default",
        sampler_seed: int = 42,
        mlflow_conn_id: str | None = MlflowHook.default_conn_name,
        mlflow_experiment: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(n_trials, int) or n_trials < 1:
            raise MLOpsConfigError(f"n_trials must be a positive integer, got {n_trials!r}")
        if direction not in ("minimize", "maximize"):
            raise MLOpsConfigError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
        self.study_name = study_name
        self.search_space = dict(search_space)
        self.n_trials = n_trials
        self.metric = metric
        self.direction = direction
        self.optuna_conn_id = optuna_conn_id
        self.sampler_seed = sampler_seed
        self.mlflow_conn_id = mlflow_conn_id
        self.mlflow_experiment = mlflow_experiment

    def execute(self, context: Context) -> list[int]:
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_mlops.training.spec import SpecError
        from airflow_mlops.training.tuning import distributions

        try:
            distributions(self.search_space)
        except SpecError as err:
            raise AirflowFailException(str(err)) from err
        url = storage_url(self.optuna_conn_id)
        optuna = _optuna()
        study = optuna.create_study(
            study_name=self.study_name,
            storage=url,
            direction=self.direction,
            sampler=optuna.samplers.TPESampler(seed=self.sampler_seed),
            load_if_exists=True,
        )
        known = study.user_attrs.get("search_space")
        if known is not None and (known, study.user_attrs.get("metric")) != (self.search_space, self.metric):
            raise AirflowFailException(
                f"study_name {self.study_name!r} exists with another search space or metric: "
                f"{known} / {study.user_attrs.get('metric')}"
            )
        study.set_user_attr("search_space", self.search_space)
        study.set_user_attr("metric", self.metric)
        if self.mlflow_conn_id and "mlflow_parent_run_id" not in study.user_attrs:
            study.set_user_attr("mlflow_parent_run_id", self._parent_run(context))
        self.log.info(
            "Study %s (%s %s) in %s: %d trials over %s",
            self.study_name,
            self.direction,
            self.metric,
            self.optuna_conn_id,
            self.n_trials,
            sorted(self.search_space),
        )
        return list(range(self.n_trials))

    def _parent_run(self, context: Context) -> str:
        client = self.mlflow_hook.get_conn()
        run = client.create_run(
            self.mlflow_hook.get_or_create_experiment(self.mlflow_experiment or context["dag"].dag_id),
            run_name=f"study {self.study_name}",
            tags={
                "optuna_study": self.study_name,
                "dag_id": context["dag"].dag_id,
                "run_id": context["run_id"],
            },
        )
        client.log_dict(run.info.run_id, self.search_space, "search_space.json")
        return str(run.info.run_id)


class TuneTrialOperator(LightningTrainOperator):
    """One Optuna trial: sample hyperparameters, train them like ``LightningTrainOperator``, report the result.

    Map it over ``CreateStudyOperator``'s slots (``.partial(...).expand(slot=...)``): the trials run
    as parallel task instances. Each asks the study for its parameters, trains with them (DDP,
    checkpoints and MLflow as usual; the run nests under the study's parent run), reports the
    metric after every validation so the pruner can stop a poor trial early (through a Lightning
    callback, on every DDP process), and tells the study the outcome. A retry finds its trial again
    (``trial.json`` beside the checkpoints) and resumes it; the last failed try marks it FAIL.

    :param study_name: the study (templated).
    :param slot: the trial slot (mapped).
    :param optuna_conn_id: as in ``CreateStudyOperator``.
    :param pruner: ``{"type": "median"|"percentile"|"threshold"|"none", ...options}``.
    :param kwargs: everything ``LightningTrainOperator`` takes; ``hyperparameters`` are the fixed ones.

    XCom: ``{"trial", "state", "value", "params", "mlflow_run_id", "pruned_at_epoch", "metrics"}``.
    """

    template_fields: Sequence[str] = (*LightningTrainOperator.template_fields, "study_name")

    def __init__(
        self,
        *,
        study_name: str,
        slot: int = 0,
        optuna_conn_id: str = "optuna_default",
        pruner: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.study_name = study_name
        self.slot = slot
        self.optuna_conn_id = optuna_conn_id
        self.pruner = dict(pruner if pruner is not None else DEFAULT_PRUNER)

    def execute(self, context: Context) -> TrialResult:  # type: ignore[override]  # a trial pushes its summary
        from optuna.trial import TrialState

        from airflow_mlops.storage import object_path
        from airflow_mlops.training.tuning import STORAGE_ENV, distributions

        url = storage_url(self.optuna_conn_id)
        study = _load_study(self.study_name, url)
        metric = study.user_attrs["metric"]
        base = self.build_spec(context)
        number, trial_id = self._trial(
            study,
            object_path(base.checkpoint_dir, self.storage_conn_id) / "trial.json",  # local or in the bucket
            distributions(study.user_attrs["search_space"]),
        )
        frozen = study.trials[number]
        if frozen.state.is_finished():  # a retry after the study was told: report it again
            return self._summary(frozen, metric)
        parent = study.user_attrs.get("mlflow_parent_run_id")
        spec = dataclasses.replace(
            base,
            hyperparameters={**base.hyperparameters, **frozen.params},
            output_dir=f"{self.output_dir.rstrip('/')}/trial-{number}",
            tags={
                **base.tags,
                "optuna_study": self.study_name,
                "optuna_trial": str(number),
                **({"mlflow.parentRunId": parent} if parent else {}),
            },
            tuning={"study": self.study_name, "trial_id": trial_id, "metric": metric, "pruner": self.pruner},
        )
        self.log.info("Trial %d of study %s: %s", number, self.study_name, frozen.params)
        try:
            result = self.train(spec, env={STORAGE_ENV: url})
        except Exception:
            ti = context.get("ti")
            if ti is None or getattr(ti, "try_number", 1) > (
                self.retries or 0
            ):  # no retry left: the trial failed
                study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            raise
        import optuna

        trial = optuna.trial.Trial(study, trial_id)
        trial.set_user_attr("mlflow_run_id", result.get("mlflow_run_id"))
        trial.set_user_attr("metrics", result["metrics"])
        if result.get("pruned_at_epoch") is not None:
            study.tell(number, state=TrialState.PRUNED)
        else:
            study.tell(number, result["metrics"][metric])
        return self._summary(study.trials[number], metric)

    @staticmethod
    def _trial(study: Any, marker: Any, space: dict[str, Any]) -> tuple[int, int]:
        if marker.exists():
            record = json.loads(marker.read_text())
            return int(record["number"]), int(record["trial_id"])
        trial = study.ask(space)
        marker.parent.mkdir(parents=True, exist_ok=True)
        # Optuna's public Trial(study, trial_id) constructor needs the storage id, which ask() keeps private.
        record = {"number": trial.number, "trial_id": trial._trial_id, "params": trial.params}
        marker.write_text(json.dumps(record))
        return trial.number, trial._trial_id

    @staticmethod
    def _summary(frozen: Any, metric: str) -> TrialResult:
        reported = frozen.intermediate_values
        return {
            "trial": frozen.number,
            "state": frozen.state.name,
            "params": frozen.params,
            "metric": metric,
            "value": frozen.value
            if frozen.value is not None
            else reported.get(max(reported), None)
            if reported
            else None,
            "pruned_at_epoch": max(reported) if frozen.state.name == "PRUNED" and reported else None,
            "mlflow_run_id": frozen.user_attrs.get("mlflow_run_id"),
            "metrics": frozen.user_attrs.get("metrics"),
        }


class BestTrialOperator(MlflowOperatorMixin, BaseOperator):
    """Close a study: the best trial's parameters to XCom, to an Asset event and, with all trials, to MLflow.

    Fails (no retry) when no trial completed, naming how many ended in each state. The study's
    MLflow parent run gets ``best_<param>`` params, the best value, the counts per state and
    ``trials.csv`` (every trial, its parameters, value and state).

    :param study_name, optuna_conn_id: as in ``CreateStudyOperator``.
    :param mlflow_conn_id: where the study's parent run is (None: no MLflow).

    XCom: ``{"study", "best_trial", "best_value", "best_params", "metric", "states", "mlflow_run_id"}``.
    Asset: each outlet's event carries the same dict as ``extra``.
    """

    required_extra: ClassVar[str | None] = "training"

    template_fields: Sequence[str] = ("study_name",)
    ui_color = "#fff4d6"

    def __init__(
        self,
        *,
        study_name: str,
        optuna_conn_id: str = "optuna_default",
        mlflow_conn_id: str | None = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.study_name = study_name
        self.optuna_conn_id = optuna_conn_id
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> StudyResult:
        from collections import Counter

        from airflow.sdk.exceptions import AirflowFailException

        study = _load_study(self.study_name, storage_url(self.optuna_conn_id))
        states = dict(Counter(t.state.name for t in study.trials))
        if not states.get("COMPLETE"):
            raise AirflowFailException(
                f"study {self.study_name}: no trial completed, nothing to choose (trials by state: {states})"
            )
        best = study.best_trial
        metric = study.user_attrs["metric"]
        parent = study.user_attrs.get("mlflow_parent_run_id")
        summary = {
            "study": self.study_name,
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": best.params,
            "metric": metric,
            "states": states,
            "mlflow_run_id": parent,
            "best_mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
        }
        self.log.info(
            "Study %s: best trial %d, %s=%.5f, params %s; trials by state %s",
            self.study_name,
            best.number,
            metric,
            best.value,
            best.params,
            states,
        )
        if self.mlflow_conn_id and parent:
            self._log_to_mlflow(study, summary)
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = summary
        return cast(StudyResult, summary)

    def _log_to_mlflow(self, study: Any, summary: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param

        client = self.mlflow_hook.get_conn()
        run_id = summary["mlflow_run_id"]
        params = [Param(f"best_{k}", str(v)) for k, v in summary["best_params"].items()]
        params.append(Param("best_trial", str(summary["best_trial"])))
        metrics = [Metric(f"best_{summary['metric']}", summary["best_value"], 0, 0)]
        metrics += [
            Metric(f"trials_{state.lower()}", count, 0, 0) for state, count in summary["states"].items()
        ]
        client.log_batch(run_id, metrics=metrics, params=params)
        client.log_text(run_id, study.trials_dataframe().to_csv(index=False), "trials.csv")
        client.set_terminated(run_id, "FINISHED")
