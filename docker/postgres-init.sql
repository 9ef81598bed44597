-- The stack's databases (as `airflow-mlops stack up` creates them): Airflow's metadata, MLflow's
-- backend store, Optuna's storage and the flights source database.
CREATE DATABASE airflow;
CREATE DATABASE mlflow;
CREATE DATABASE optuna;
CREATE DATABASE flights;
