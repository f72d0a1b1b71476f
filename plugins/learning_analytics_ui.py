"""Airflow plugin: the "Learning analytics" view (results of the models) in the Airflow UI.

The API server mounts the FastAPI app under ``/learning-analytics`` and the UI shows a
navigation entry opening it inside the Airflow UI. Pages require the UI's login (see
``learning_analytics.ui.app``). Plugins load lazily; set
``AIRFLOW__CORE__LAZY_LOAD_PLUGINS=False`` for the entry to appear at start-up.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from learning_analytics.ui.app import URL_PREFIX, create_app


class LearningAnalyticsUiPlugin(AirflowPlugin):
    name = "learning_analytics_ui"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Learning analytics"}]
    external_views = [
        {
            "name": "Learning analytics",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "learning-analytics",
            "category": "browse",
        }
    ]
