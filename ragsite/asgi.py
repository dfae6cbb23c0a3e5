import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragsite.settings.dev")

# uvicorn serves the whole site, static files included: the pages' JavaScript (htmx, installed from npm
# at set-up into static/vendor/) comes from this server, never from a CDN.
application = ASGIStaticFilesHandler(get_asgi_application())
