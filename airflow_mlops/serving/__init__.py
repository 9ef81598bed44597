"""Reserved for the serving capability; imports no Airflow."""
