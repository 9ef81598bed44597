"""Reserved for the monitoring capability; imports no Airflow."""
