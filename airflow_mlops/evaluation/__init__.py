"""Model evaluation: metrics overall and per slice, fairness gaps, importance, gates (no Airflow import)."""
