"""Finding 9 (part): no Content-Security-Policy. Veil's pages now carry one (django-csp) that allows
only Veil's own scripts and styles, and the pages pass it: no inline script, handler or style."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from jitaccess.demo import load_demo_data
from tests.e2e.conftest import browser, page, sign_in  # noqa: F401

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"
INLINE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|javascript:", re.I)


def directives(header: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.django_db
def test_pages_carry_a_policy_without_inline_script_or_style(client):
    policy = directives(client.get("/login/")["Content-Security-Policy"])

    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]


def test_no_template_has_inline_script_handlers_or_style():
    offenders = [
        f"{path.relative_to(TEMPLATES)}: {match.group(0)}"
        for path in TEMPLATES.rglob("*.html")
        for match in INLINE.finditer(path.read_text())
    ]

    assert offenders == []


PAGES = [
    ("admin", "home"),
    ("admin", "jitaccess:request-new"),
    ("admin", "jitaccess:breakglass"),
    ("admin", "policy:insights"),
    ("admin", "masking:catalog"),
    ("admin", "identity:service-accounts"),
    ("dave", "audit:dashboard"),
    ("dave", "audit:events"),
    ("admin", "admin:index"),
    ("admin", "api-docs"),
]


@pytest.mark.browser
def test_the_main_pages_raise_no_policy_violation_in_chromium(page: Any, live_server, transactional_db):  # noqa: F811
    load_demo_data()
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: (
            violations.append(f"{page.url}: {msg.text}") if "Content Security Policy" in msg.text else None
        ),
    )
    signed_in = ""
    for person, name in PAGES:
        if person != signed_in:
            page.context.clear_cookies()
            sign_in(page, person, "veil-demo")
            signed_in = person
        page.goto(reverse(name))
        page.wait_for_load_state("networkidle")

    assert violations == []
