"""Veil's WSGI application: the decision endpoint in front, Django for everything else."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

from config.checks import refuse_unsafe_production  # noqa: E402
from masking.decisions.endpoint import DecisionEndpoint  # noqa: E402  (needs the apps loaded)

refuse_unsafe_production()
application = DecisionEndpoint(django_application)
