app_name = "ingest"
urlpatterns: list = []
