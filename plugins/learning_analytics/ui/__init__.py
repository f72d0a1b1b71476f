"""The "Learning analytics" view of the Airflow UI: a FastAPI app (``app``) rendering
the models' results from the warehouse as HTML with server-rendered SVG charts, and
its navigation entry. Registered by ``plugins/learning_analytics_ui.py``."""
