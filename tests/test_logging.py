"""The development log: a refusal is one line, a real error keeps its traceback."""

from __future__ import annotations

import io
import logging

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def console():
    """What the configured console handler writes during the test."""
    (handler,) = [h for h in logging.getLogger().handlers if h.get_name() == "console"]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_a_refusal_is_logged_without_a_traceback(client, demo, console):
    client.force_login(demo["alice"])

    assert client.get(reverse("audit:dashboard")).status_code == 403

    log = console.getvalue()
    assert "Forbidden (Permission denied): /audit/" in log
    assert "Traceback" not in log and "PermissionDenied" not in log
    assert log.count("Forbidden") == 1, "once, not again by Django's own handler"


def test_a_server_error_keeps_its_traceback(client, console, settings):
    settings.ROOT_URLCONF = "tests.test_navigation"
    client.raise_request_exception = False

    assert client.get("/boom/").status_code == 500

    log = console.getvalue()
    assert "Internal Server Error: /boom/" in log and "Traceback" in log and "RuntimeError: boom" in log
