from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "csvault.core"
    label = "core"
