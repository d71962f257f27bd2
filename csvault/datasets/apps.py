from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "csvault.datasets"
    label = "datasets"

    def ready(self) -> None:
        from csvault.core.metrics import STATE_PARTS
        from csvault.datasets.metrics import dataset_gauges

        STATE_PARTS["datasets"] = dataset_gauges
