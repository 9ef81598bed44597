"""The governed model registry on MLflow: versions, model cards, states and aliases (no Airflow import)."""
