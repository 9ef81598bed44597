-- The stack's databases (as `airflow-mlops stack up` creates them): Airflow's metadata, MLflow's
-- backend store, Optuna's storage, the flights source database and Feast's registry.
CREATE DATABASE airflow;
CREATE DATABASE mlflow;
CREATE DATABASE optuna;
CREATE DATABASE flights;
CREATE DATABASE feast;
