"""The data plane: source datasets and extraction. Imports no Airflow."""
