"""airflow-mlops: the MLOps loop as Apache Airflow 3 operators, hooks, triggers and reference DAGs."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _option(
    description: str, example: str, default: str | None = None, kind: str = "string"
) -> dict[str, Any]:
    return {
        "description": description,
        "version_added": "0.1.0",
        "type": kind,
        "example": example,
        "default": default,
    }


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

    ``tests/unit/test_provider_info.py`` compares it with the package: every module of
    ``operators/``, ``sensors/``, ``hooks/`` and ``triggers/``, every link class, every hook's
    connection type and every ``[mlops]`` option read in ``settings.py`` must be listed here.
    """
    return {
        "package-name": "airflow-mlops",
        "name": "MLOps",
        "description": "The MLOps loop as Airflow building blocks: extraction, validation, features, "
        "training, registry, serving, monitoring.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": "MLOps source data", "tags": ["software"]},
            {"integration-name": "MLOps data validation", "tags": ["software"]},
            {
                "integration-name": "Feast",
                "external-doc-url": "https://docs.feast.dev/",
                "tags": ["software"],
            },
            {
                "integration-name": "PyTorch Lightning",
                "external-doc-url": "https://lightning.ai/docs/pytorch/stable/",
                "tags": ["software"],
            },
            {"integration-name": "Optuna", "external-doc-url": "https://optuna.org/", "tags": ["software"]},
            {
                "integration-name": "MLflow",
                "external-doc-url": "https://mlflow.org/docs/latest/",
                "tags": ["software"],
            },
            {"integration-name": "MLOps model server", "tags": ["software"]},
            {"integration-name": "MLOps monitoring", "tags": ["software"]},
        ],
        "operators": [
            {
                "integration-name": "MLOps source data",
                "python-modules": ["airflow_mlops.operators.extract"],
            },
            {
                "integration-name": "MLOps data validation",
                "python-modules": ["airflow_mlops.operators.validate", "airflow_mlops.operators.dataset"],
            },
            {"integration-name": "Feast", "python-modules": ["airflow_mlops.operators.features"]},
            {
                "integration-name": "PyTorch Lightning",
                "python-modules": [
                    "airflow_mlops.operators.train",
                    "airflow_mlops.operators.sagemaker",
                    "airflow_mlops.operators.kubernetes",
                ],
            },
            {"integration-name": "Optuna", "python-modules": ["airflow_mlops.operators.tune"]},
            {
                "integration-name": "MLflow",
                "python-modules": ["airflow_mlops.operators.evaluate", "airflow_mlops.operators.registry"],
            },
            {
                "integration-name": "MLOps model server",
                "python-modules": [
                    "airflow_mlops.operators.deploy",
                    "airflow_mlops.operators.infra",
                    "airflow_mlops.operators.predict",
                    "airflow_mlops.operators.rollout",
                ],
            },
            {
                "integration-name": "MLOps monitoring",
                "python-modules": ["airflow_mlops.operators.experiment", "airflow_mlops.operators.monitor"],
            },
        ],
        "hooks": [
            {"integration-name": "MLOps source data", "python-modules": ["airflow_mlops.hooks.sql"]},
            {"integration-name": "Feast", "python-modules": ["airflow_mlops.hooks.feast"]},
            {"integration-name": "MLflow", "python-modules": ["airflow_mlops.hooks.mlflow"]},
            {
                "integration-name": "MLOps model server",
                "python-modules": ["airflow_mlops.hooks.model_server"],
            },
        ],
        "sensors": [
            {"integration-name": "MLflow", "python-modules": ["airflow_mlops.sensors.approval"]},
            {"integration-name": "MLOps model server", "python-modules": ["airflow_mlops.sensors.canary"]},
        ],
        "triggers": [
            {"integration-name": "MLOps source data", "python-modules": ["airflow_mlops.triggers.landing"]},
            {"integration-name": "MLflow", "python-modules": ["airflow_mlops.triggers.approval"]},
            {"integration-name": "MLOps model server", "python-modules": ["airflow_mlops.triggers.canary"]},
        ],
        "connection-types": [
            {"hook-class-name": "airflow_mlops.hooks.feast.FeastHook", "connection-type": "feast"},
            {"hook-class-name": "airflow_mlops.hooks.mlflow.MlflowHook", "connection-type": "mlflow"},
            {
                "hook-class-name": "airflow_mlops.hooks.model_server.ModelServerHook",
                "connection-type": "mlopsmodelserver",
            },
        ],
        "extra-links": [
            "airflow_mlops.links.MLflowRunLink",
            "airflow_mlops.links.ModelVersionLink",
            "airflow_mlops.links.EvaluationReportLink",
            "airflow_mlops.links.ValidationReportLink",
            "airflow_mlops.links.MonitoringReportLink",
        ],
        "config": {
            "mlops": {
                "description": "Where the MLOps suite keeps its data and which connections it uses by default.",
                "options": {
                    "lake_uri": _option(
                        "Root URI of the data lake (file:// or s3://).", "s3://my-bucket/lake"
                    ),
                    "lake_conn_id": _option(
                        "Airflow connection for the lake's object storage (s3:// lakes).", "aws_default"
                    ),
                    "landing_dir": _option(
                        "Absolute path of the landing folder an ingest DAG watches for new files.",
                        "/data/landing",
                    ),
                    "source_conn_id": _option(
                        "Airflow connection of the source database the extract DAGs read.",
                        "mlops_source",
                        "mlops_source",
                    ),
                    "ingest_queue_url": _option(
                        "SQS queue receiving the landing bucket's S3 notifications.",
                        "https://sqs.us-east-1.amazonaws.com/123456789012/landing",
                    ),
                    "feature_repo": _option(
                        "Path of the Feast feature repository (feature_store.yaml and definitions).",
                        "/srv/mlops/feature_repo",
                    ),
                    "feast_conn_id": _option(
                        "The feast connection the Feast operators use when a DAG names none.", "feast_default"
                    ),
                    "feast_dir": _option(
                        "Folder of the Feast registry and SQLite online store (embedded default).",
                        "/srv/mlops/data/feast",
                    ),
                    "mlflow_conn_id": _option(
                        "The mlflow connection of the tracking server and registry (plugin, CLI, reference DAGs).",
                        "mlflow_default",
                        "mlflow_default",
                    ),
                    "mlflow_ui_url": _option(
                        "MLflow's web UI, for the MLflow run links on task instances (empty: no link).",
                        "http://mlflow.example.com:5000",
                    ),
                    "optuna_conn_id": _option(
                        "The connection of the Optuna storage (sqlite or postgres).",
                        "optuna_default",
                        "optuna_default",
                    ),
                    "code_path": _option(
                        "Folders of the project's own modules (networks, data modules) for the training "
                        "driver, besides the DAG folder; separated by the OS path separator.",
                        "/srv/mlops/src",
                    ),
                    "auto_approve": _option(
                        "Approve registered models without a person (the demo's policy).",
                        "True",
                        "False",
                        "boolean",
                    ),
                    "approver_must_differ": _option(
                        "Separation of duties: the person who triggered the DAG run that trained a "
                        "version cannot approve it.",
                        "True",
                        "False",
                        "boolean",
                    ),
                    "require_infra_blessing": _option(
                        "DeployModelOperator deploys a version only after InfraValidateOperator "
                        "blessed it (the version's infra_blessing tag).",
                        "True",
                        "False",
                        "boolean",
                    ),
                    "alert_email_to": _option(
                        "Who gets alerts (drift, a failed gate, a rollback, a pending approval) by mail, "
                        "comma-separated; empty: no mail.",
                        "mlops-team@example.com",
                        "",
                    ),
                    "alert_email_from": _option(
                        "The sender of alert mail.", "airflow@example.com", "airflow-mlops@localhost"
                    ),
                    "alert_smtp_conn_id": _option(
                        "The SMTP connection alert mail goes through.", "smtp_default", "smtp_default"
                    ),
                    "alert_slack_conn_id": _option(
                        "A Slack incoming-webhook connection alerts are posted to (the Slack provider); "
                        "empty: none.",
                        "slack_alerts",
                        "",
                    ),
                    "alerts_base_url": _option(
                        "The Airflow UI's address for the report links in alerts; default [api] base_url.",
                        "https://airflow.example.com",
                        "",
                    ),
                    "serving_dir": _option(
                        "The model server's deployments, model cache and request log.", "/srv/mlops/serving"
                    ),
                    "request_log_uri": _option(
                        "The model servers' request log that the monitors read: a folder or an object "
                        "store URI (read through lake_conn_id); default <serving_dir>/requests.",
                        "s3://my-bucket/serving/requests",
                    ),
                    "data_roots": _option(
                        "URIs, besides the lake and the landing folder, under which data operators "
                        "may read, write and move data (comma-separated), e.g. an S3 landing bucket.",
                        "s3://landing",
                        "",
                    ),
                    "trusted_model_modules": _option(
                        "Modules, besides airflow_mlops, that the model server may import to load a "
                        "registered model (comma-separated): a network not carried in its package, or "
                        "an MLflow flavor's loader such as mlflow.sklearn.",
                        "mlflow.sklearn",
                        "",
                    ),
                },
            }
        },
    }
