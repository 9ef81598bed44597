"""Reserved for the training capability; imports no Airflow."""
