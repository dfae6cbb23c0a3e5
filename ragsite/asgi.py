import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from ops.admission import AdmissionLimit
from ragsite.request_body import RequestBodyLimit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragsite.settings.dev")

# uvicorn serves the whole site, static files included: the pages' JavaScript (htmx, installed from npm
# at set-up into static/vendor/) comes from this server, never from a CDN. Overload is answered 429 with
# Retry-After in front of Django, before a thread or a database connection is spent on it; and only once
# its body is in (within a deadline and a size), so that slow bodies hold no slot.
application = RequestBodyLimit.from_settings(
    AdmissionLimit.from_settings(ASGIStaticFilesHandler(get_asgi_application()))
)
