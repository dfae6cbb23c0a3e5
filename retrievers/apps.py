from django.apps import AppConfig


class RetrieversConfig(AppConfig):
    name = "retrievers"
    verbose_name = "Retrievers"
