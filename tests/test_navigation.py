"""The menu offers each demo person only the areas they may open; refusals and missing pages are
branded pages of the site, and the server error page stands alone."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import AnonymousUser, Permission
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from django.urls import include, path, reverse
from django.views import defaults

from config import urls as config_urls
from config.context_processors import menu_for, navigation
from identity.models import Role, User
from tests.factories import make_user

pytestmark = pytest.mark.django_db

EVERYONE = {"My access", "My requests", "Database access", "API docs"}
APPROVER = {"Approvals", "Access reviews"}  # approve_request somewhere, or a role an approval policy asks
REQUESTER = {"Request access"}  # people with request_unmask somewhere
POLICY = {
    "Catalog",
    "Policy",
    "Rules",
    "Policy versions",
    "Policy insights",
    "Break-glass review",
    "Access review settings",
    "Request settings",
}
AUDIT = {"Audit", "Audit events", "Audit exports"}
ADMIN = {"Admin site"}
SERVICE_ACCOUNTS = {"Service accounts"}


def main_menu(client, user: User) -> str:
    """The main menu of the person's home page, as HTML."""
    client.force_login(user)
    page = client.get(reverse("home")).content.decode()
    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', page, re.S)
    assert nav, "the home page shows the main menu"
    return nav.group(1)


def menu_links(client, user: User) -> dict[str, str]:
    """Label -> href of every link in the main menu."""
    links = re.findall(r'<a href="([^"]*)"[^>]*>([^<]+)</a>', main_menu(client, user))
    return {label: href for href, label in links}


def test_an_engineer_is_offered_requests_and_the_api_docs_but_no_approvals(client, demo):
    links = menu_links(client, demo["alice"])

    assert set(links) == EVERYONE | REQUESTER
    assert links["Request access"] == reverse("jitaccess:request-new")
    menu = main_menu(client, demo["alice"])
    assert "Policy admin" not in menu and "Compliance" not in menu, "no empty sections"


def test_a_compliance_reader_is_offered_the_audit_pages(client, demo):
    links = menu_links(client, demo["dave"])

    assert set(links) == EVERYONE | AUDIT
    assert links["Audit events"] == reverse("audit:events")


def test_a_security_admin_is_offered_policy_and_audit_but_not_the_admin_site(client, demo):
    assert set(menu_links(client, demo["erin"])) == EVERYONE | APPROVER | POLICY | AUDIT


def test_a_superuser_is_offered_everything(client, demo):
    links = menu_links(client, demo["admin"])

    assert set(links) == EVERYONE | REQUESTER | APPROVER | POLICY | AUDIT | ADMIN | SERVICE_ACCOUNTS
    assert links["Admin site"] == reverse("admin:index")
    assert links["Service accounts"] == reverse("identity:service-accounts")


def test_staff_are_offered_the_admin_site_and_the_audit_they_may_read(client, db):
    assert set(menu_links(client, make_user("sam", is_staff=True))) == EVERYONE | AUDIT | ADMIN


def test_an_approver_by_policy_role_or_permission_is_offered_approvals(client, demo):
    """bob approves by permission; someone holding only the role an approval policy names is asked
    too, so is offered the queue."""
    assert set(menu_links(client, demo["bob"])) == EVERYONE | REQUESTER | APPROVER
    sam = make_user("sam")
    assert "Approvals" not in menu_links(client, sam)
    Role.objects.get(name="pii-approvers").users.add(sam)
    assert "Approvals" in menu_links(client, sam)


def test_every_offered_link_opens(client, demo):
    """What the menu offers, the area lets the person use (no "Not allowed", no admin login)."""
    for username in ("alice", "dave", "erin", "admin"):
        for label, href in menu_links(client, demo[username]).items():
            response = client.get(href)
            assert response.status_code == 200, (username, label, response.status_code)


def test_the_menu_costs_nothing_until_shown_and_a_few_queries_when_it_is(
    demo, django_assert_num_queries, django_assert_max_num_queries
):
    request = RequestFactory().get("/")
    request.user = User.objects.get(username="alice")

    with django_assert_num_queries(0):
        context = navigation(request)
    with django_assert_max_num_queries(7):  # global permissions (2, usually loaded by the page) + 5
        sections = [section for section, _ in context["navigation"]]
    assert sections == ["Engineer", "Developers"]
    with django_assert_num_queries(0):
        assert [section for section, _ in navigation(request)["navigation"]] == sections, "once a request"

    request.user = User.objects.get(username="admin")
    with django_assert_num_queries(0):
        assert len(menu_for(request)) == 5


def test_an_engineer_refused_the_audit_log_sees_the_branded_page_with_the_reason(client, demo):
    client.force_login(demo["alice"])

    response = client.get(reverse("audit:dashboard"))

    assert response.status_code == 403
    assert [t.name for t in response.templates][:2] == ["403.html", "base.html"]
    page = response.content.decode()
    assert '<p role="alert">You may not read the audit log.</p>' in page
    assert "<title>Not allowed · Veil</title>" in page and 'class="brand"' in page
    assert '<nav aria-label="Main">' in page, "the person's menu, to find their way back"


def test_a_refusal_without_a_reason_says_so_plainly(rf):
    request = rf.get("/somewhere/")
    request.user = AnonymousUser()

    response = defaults.permission_denied(request, PermissionDenied())

    assert response.status_code == 403
    assert "You do not have permission to open this page." in response.content.decode()


def test_an_unknown_address_gets_the_branded_404(client, demo, settings):
    settings.DEBUG = False
    client.force_login(demo["alice"])

    response = client.get('/no-such-page/"here"')

    assert response.status_code == 404
    page = response.content.decode()
    assert "<title>Page not found · Veil</title>" in page and 'class="brand"' in page
    assert "<code>/no-such-page/%22here%22</code>" in page, "the address, quoted"
    assert '<nav aria-label="Main">' in page


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


urlpatterns = [path("boom/", boom), path("api/v1/boom", boom), path("", include("config.urls"))]
handler404, handler500 = config_urls.handler404, config_urls.handler500


def test_a_server_error_gets_the_standalone_branded_500(client, settings, django_assert_num_queries):
    settings.DEBUG = False
    settings.ROOT_URLCONF = __name__
    client.raise_request_exception = False

    response = client.get("/boom/")

    assert response.status_code == 500
    page = response.content.decode()
    assert "<title>Something went wrong · Veil</title>" in page and 'class="brand"' in page
    with django_assert_num_queries(0):  # no request context, no database
        assert "Something went wrong" in defaults.server_error(RequestFactory().get("/")).content.decode()


def test_someone_given_the_view_permission_is_offered_the_service_accounts(client, db):
    sam = make_user("sam")
    sam.user_permissions.add(Permission.objects.get(codename="view_serviceaccount"))
    assert set(menu_links(client, sam)) == EVERYONE | SERVICE_ACCOUNTS


def test_the_api_answers_an_unknown_path_and_a_failure_in_its_json_error_shape(client, settings):
    settings.DEBUG = False
    settings.ROOT_URLCONF = __name__
    client.raise_request_exception = False

    missing = client.post("/api/v1/decisions/", {}, content_type="application/json")
    failed = client.get("/api/v1/boom")

    assert missing.status_code == 404 and missing["Content-Type"] == "application/json"
    assert missing.json()["error"]["code"] == "not_found"
    assert "/api/v1/decisions/" in missing.json()["error"]["message"]
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "server_error"
    assert "boom" not in failed.content.decode(), "no internals in the answer"
