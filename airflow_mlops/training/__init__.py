"""The training runtime: plain Python, torch and Lightning; never imports Airflow.

Run it as ``python -m airflow_mlops.training <spec.json>``, or under ``torchrun`` for DDP.
"""
