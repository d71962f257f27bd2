from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "csvault.web"
    label = "web"
