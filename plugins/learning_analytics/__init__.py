"""Learning-analytics pipelines: shared machinery for the Airflow DAGs in ``dags/``.

The DAG files stay thin; everything they do lives here so it can be imported and
unit-tested without a scheduler:

* :mod:`.settings`   typed per-model settings (env var default, DAG ``Param`` override)
* :mod:`.windows`    lookback windows computed from a run's logical date
* :mod:`.warehouse`  migrations and transactional COPY + upsert persistence
* :mod:`.r_service`  ``HttpHook`` subclass for the R plumber services
* :mod:`.staging`    task-to-task data hand-off outside XCom
* :mod:`.pipeline`   the extract -> fit -> persist DAG factory shared by the models
"""
