"""WCAG 2.1 AA basics of the server-rendered pages, page by page as each demo person sees them:
every form control is labelled, every ARIA reference points at something on the page, a field's
error is tied to the field, data tables have captions and scoped headers, and the focus ring and
form control edges stand out (3:1). What needs a browser is in tests/e2e/test_accessibility.py.

axe-core is not vendored, so these pin what an axe run found and what was fixed; they do not
replace the run.

The pages aim at WCAG 2.1 AA. They are server-rendered HTML that works without JavaScript;
`static/veil.js` (every page) and the per-area scripts only add to it. What holds it in place:

- Every form control has a `<label>` (visually hidden where the layout names it otherwise); a
  field's help and error are tied to it the way Django renders them (`aria-describedby` with
  `<id>_helptext` and `<id>_error`, `aria-invalid="true"`), including the hand-written CEL
  condition fields of the policy forms (`templates/masking/_field.html` and the three forms).
  Grouped choices (the column picker, durations) are fieldsets whose errors describe the fieldset;
  the picker's fieldset is named after the chosen table, each column's checkbox is described by
  what masks it (or shows it), the table list's filter box announces what it left in a status
  region, and the approval preview is a live region.
- Data tables have a `<caption>` (visually hidden) and `<th scope>` on every header cell.
- Colours: text 4.5:1 (state badges, levels, buttons, muted text); form control edges and the
  focus ring 3:1 against the page (`--control-border`, `--focus` in `static/veil.css`; the top bar
  keeps the bright amber ring).
- Reflow: nothing scrolls the page sideways at 320 CSS px (400% zoom); a wide table or code block
  scrolls inside itself, and `static/veil.js` makes it focusable (and names it) while it overflows,
  so the keyboard can scroll it. The menu closes on Escape and returns focus to "Menu".

`tests/test_accessibility.py` pins these page by page as the demo people see them. It does not
run axe-core (not vendored, and tests download nothing); to re-audit, install it outside the repo
(`npm install axe-core`), inject `axe.min.js` into each page with Playwright's `add_script_tag`
and run `axe.run()` with the `wcag2a`, `wcag2aa`, `wcag21a`, `wcag21aa` and `best-practice` tags,
at 1280 and 390 px wide.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.urls import reverse

from identity.models import User
from jitaccess.models import AccessRequest
from masking.models import Database, Table

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
UNLABELLED_INPUT_TYPES = {"hidden", "submit", "button", "reset", "image"}


class Page(HTMLParser):
    """The parts of a page an accessibility check needs: elements with their attributes and
    ancestors, ids, labels, and each table's caption and header cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self.ids: set[str] = set()
        self.label_for: set[str] = set()
        self.tables: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        ancestors = [t for t, _ in self.stack]
        self.elements.append((tag, a, ancestors))
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "label" and a.get("for"):
            self.label_for.add(a["for"])
        if tag == "table":
            self.tables.append({"caption": False, "th": []})
        elif tag == "caption" and self.tables:
            self.tables[-1]["caption"] = True
        elif tag == "th" and self.tables:
            self.tables[-1]["th"].append((a, "thead" in ancestors))
        if tag not in VOID:
            self.stack.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def controls(self) -> list[tuple[str, dict[str, str], list[str]]]:
        return [
            (tag, a, anc)
            for tag, a, anc in self.elements
            if tag in {"select", "textarea"}
            or (tag == "input" and a.get("type", "text") not in UNLABELLED_INPUT_TYPES)
        ]


def parse(html: str) -> Page:
    parsed = Page()
    parsed.feed(html)
    return parsed


def pages_of(demo: dict[str, User]) -> list[tuple[str, str]]:
    """(person, url) of the main pages of each demo persona."""
    shop = Database.objects.filter(name="shop").order_by("pk").first()
    assert shop is not None, "the demo catalogue has a database"
    customers = Table.objects.get(schema__database=shop, name="customers")
    first_request = AccessRequest.objects.filter(requester=demo["alice"]).order_by("pk").first()
    assert first_request is not None, "alice has a request in the demo"
    return [
        ("alice", reverse("home")),
        ("alice", reverse("jitaccess:request-new")),
        ("alice", f"{reverse('jitaccess:request-new')}?database={shop.pk}"),
        ("alice", f"{reverse('jitaccess:request-new')}?database={shop.pk}&table={customers.pk}"),
        ("alice", reverse("jitaccess:requests")),
        ("alice", reverse("jitaccess:request-detail", args=[first_request.pk])),
        ("bob", reverse("jitaccess:approvals")),
        ("dave", reverse("audit:dashboard")),
        ("dave", reverse("audit:events")),
        ("dave", reverse("audit:report", args=["unmasks"])),
        ("dave", reverse("audit:exports")),
        ("admin", reverse("masking:catalog")),
        ("admin", reverse("policy:overview")),
        ("admin", reverse("policy:rules")),
        ("admin", reverse("policy:rule-new")),
        ("admin", reverse("policy:exemptions")),
        ("admin", reverse("policy:exemption-new")),
        ("admin", reverse("policy:approval-policies")),
        ("admin", reverse("policy:approval-policy-new")),
        ("admin", reverse("policy:semantic-types")),
        ("admin", reverse("policy:versions")),
        ("admin", reverse("policy:changes")),
        ("admin", reverse("policy:checks")),
        ("admin", reverse("policy:insights")),
        ("admin", reverse("identity:service-accounts")),
        ("admin", reverse("identity:service-account-new")),
    ]


def fetch(client, user: User, url: str) -> Page:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, url
    return parse(response.content.decode())


def unlabelled_controls(doc: Page) -> list[str]:
    missing = []
    for tag, a, ancestors in doc.controls():
        if a.get("id") in doc.label_for or "label" in ancestors:
            continue
        if a.get("aria-label", "").strip() or a.get("aria-labelledby"):
            continue
        missing.append(f"<{tag} name={a.get('name')!r} id={a.get('id')!r}>")
    return missing


def dangling_references(doc: Page) -> list[str]:
    broken = []
    for tag, a, _ in doc.elements:
        for attr in ("aria-describedby", "aria-labelledby", "aria-controls"):
            for ref in a.get(attr, "").split():
                if ref not in doc.ids:
                    broken.append(f"<{tag} id={a.get('id')!r}> {attr}={ref!r}")
    return broken


def test_every_form_control_on_the_main_pages_has_a_label(client, demo):
    seen = 0
    for person, url in pages_of(demo):
        doc = fetch(client, demo[person], url)
        seen += len(doc.controls())
        assert unlabelled_controls(doc) == [], f"{person} on {url}"
    assert seen > 50, "the pages had forms to check"


def test_aria_references_on_the_main_pages_point_at_something_on_the_page(client, demo):
    """Django names a field's help text `<id>_helptext` in aria-describedby; the policy forms
    rendered it under another id, so screen readers read no help at all."""
    for person, url in pages_of(demo):
        assert dangling_references(fetch(client, demo[person], url)) == [], f"{person} on {url}"


@pytest.mark.parametrize(
    "url_name", ["policy:rule-new", "policy:exemption-new", "policy:approval-policy-new"]
)
def test_a_policy_forms_errors_are_tied_to_their_fields(client, demo, url_name):
    client.force_login(demo["admin"])
    response = client.post(reverse(url_name), {"condition": "resource.colour == 'red'"})
    assert response.status_code == 200
    doc = parse(response.content.decode())

    assert dangling_references(doc) == []
    invalid = {a["id"]: a for tag, a, _ in doc.elements if a.get("aria-invalid") == "true" and "id" in a}
    assert "id_condition" in invalid, "the condition the server refused is marked invalid without JS"
    described = invalid["id_condition"]["aria-describedby"].split()
    assert "id_condition_error" in described and "id_condition_helptext" in described
    error_list = next(a for tag, a, _ in doc.elements if a.get("id") == "id_condition_error")
    assert "errorlist" in error_list.get("class", "")
    for field_id, attrs in invalid.items():
        described_by = attrs.get("aria-describedby", "").split()
        assert f"{field_id}_error" in described_by, f"{field_id}'s error is read out"


def test_the_request_forms_errors_are_tied_to_the_picker_and_the_fields(client, demo):
    shop = Database.objects.order_by("pk").first()
    assert shop is not None
    client.force_login(demo["alice"])
    response = client.post(f"{reverse('jitaccess:request-new')}?database={shop.pk}", {"database": shop.pk})
    assert response.status_code == 200
    doc = parse(response.content.decode())

    assert dangling_references(doc) == []
    picker = next(a for tag, a, _ in doc.elements if tag == "fieldset" and "data-picker" in a)
    assert "id_scope_error" in picker.get("aria-describedby", "").split()
    reason = next(a for tag, a, _ in doc.elements if a.get("id") == "id_reason")
    assert reason.get("aria-invalid") == "true"
    assert "id_reason_error" in reason["aria-describedby"].split()


def test_the_column_picker_names_its_table_and_says_why_each_column_is_masked(client, demo):
    shop = Database.objects.filter(name="shop").order_by("pk").first()
    assert shop is not None
    customers = Table.objects.get(schema__database=shop, name="customers")
    url = f"{reverse('jitaccess:request-new')}?database={shop.pk}&table={customers.pk}"
    client.force_login(demo["alice"])
    html = client.get(url).content.decode()
    doc = parse(html)

    assert "<legend>What to unmask in public.customers</legend>" in html
    boxes = [a for tag, a, anc in doc.elements if a.get("type") == "checkbox" and "fieldset" in anc]
    columns = [a for a in boxes if a.get("value", "").startswith("column:")]
    assert len(columns) == customers.columns.count()
    for box in columns:
        assert box.get("aria-describedby") in doc.ids, "each column's checkbox is described by its why"
    assert any(a.get("role") == "status" and "data-picker-status" in a for _, a, _ in doc.elements)
    preview = next(a for _, a, _ in doc.elements if "data-preview" in a)
    assert preview.get("aria-live") == "polite"


def test_every_data_table_has_a_caption_and_scoped_header_cells(client, demo):
    tables = 0
    for person, url in pages_of(demo):
        doc = fetch(client, demo[person], url)
        for n, table in enumerate(doc.tables, 1):
            tables += 1
            assert table["caption"], f"table {n} on {url} has a caption"
            assert table["th"], f"table {n} on {url} has header cells"
            for attrs, in_head in table["th"]:
                assert attrs.get("scope") == ("col" if in_head else "row"), f"a header of table {n} on {url}"
    assert tables >= 8


# Colour contrast of the stylesheet (WCAG 1.4.11 non-text contrast: 3:1).


def luminance(colour: str) -> float:
    hex_digits = colour.lstrip("#")
    if len(hex_digits) == 3:
        hex_digits = "".join(c * 2 for c in hex_digits)
    channels = [int(hex_digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def stylesheet() -> tuple[str, dict[str, str]]:
    css = (Path(settings.BASE_DIR) / "static" / "veil.css").read_text()
    variables = dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{3,6})", css))
    return css, variables


def colour_in(css: str, variables: dict[str, str], selector: str, prop: str) -> str:
    rule = re.search(re.escape(selector) + r"\s*\{([^}]*)\}", css)
    assert rule, f"veil.css styles {selector}"
    value = re.search(prop + r":[^;]*?(var\(--([\w-]+)\)|#[0-9a-fA-F]{3,6})", rule.group(1))
    assert value, f"{selector} sets a {prop} colour"
    return variables[value.group(2)] if value.group(2) else value.group(1)


def test_the_focus_ring_stands_out_on_the_page_and_on_the_top_bar():
    css, variables = stylesheet()
    ring = colour_in(css, variables, ":focus-visible", "outline")
    for background in ("#ffffff", variables["bg"]):
        assert contrast(ring, background) >= 3, f"focus ring {ring} on {background}"
    top_bar = ".topbar :focus-visible, .skip-link:focus-visible"
    top_bar_ring = colour_in(css, variables, top_bar, "outline-color")
    assert contrast(top_bar_ring, "#111827") >= 3
    assert "main:focus { outline:none; }" in css, "only the skip link's target drops the ring"
    elsewhere = css.replace("main:focus", "")
    assert not re.search(r":focus(-visible)?\s*\{[^}]*outline:\s*(none|0)", elsewhere)


def test_form_controls_have_an_edge_of_3_to_1():
    css, variables = stylesheet()
    edge = colour_in(css, variables, "input, select, textarea", "border")
    for background in ("#ffffff", variables["bg"]):
        assert contrast(edge, background) >= 3, f"control border {edge} on {background}"


def test_state_badges_and_buttons_have_text_contrast_of_4_5_to_1():
    css, variables = stylesheet()
    for selector in [".state-pending", ".state-approved", ".state-scheduled", ".level-2", ".kind-approved"]:
        rule = re.search(re.escape(selector) + r"[^{]*\{([^}]*)\}", css)
        assert rule, selector
        bg = re.search(r"background:(#[0-9a-fA-F]{3,6})", rule.group(1))
        fg = re.search(r"(?<!-)color:\s*(?:var\(--([\w-]+)\)|(#[0-9a-fA-F]{3,6}))", rule.group(1))
        assert bg and fg, selector
        text = variables[fg.group(1)] if fg.group(1) else fg.group(2)
        assert contrast(text, bg.group(1)) >= 4.5, selector
    assert contrast(variables["accent-fg"], variables["accent"]) >= 4.5, "primary button"
    assert contrast("#ffffff", variables["danger"]) >= 4.5, "danger button"
    assert contrast(variables["muted"], variables["bg"]) >= 4.5, "muted text"
