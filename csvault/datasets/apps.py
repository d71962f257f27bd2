from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "csvault.datasets"
    label = "datasets"
