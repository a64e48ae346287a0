"""What a browser would post from an admin page: the fields of its form as they stand, and the
same form with one field changed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

PostData = dict[str, list[str]]
_TEXT = {"text", "email", "url", "search", "tel"}


@dataclass
class Field:
    name: str
    kind: str
    value: str = ""
    checked: bool = False
    options: list[str] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.fields = form_id, False, list[Field]()
        self._open: Field | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        elif not self.inside or not (a.get("name") or tag == "option"):
            return
        elif tag == "input" and a.get("type", "text") not in ("submit", "button", "reset", "file", "image"):
            kind = a.get("type", "text")
            self.fields.append(
                Field(a["name"], kind, a.get("value", "on" if kind == "checkbox" else ""), "checked" in a)
            )
        elif tag == "select":
            self._open = Field(a["name"], "select-multiple" if "multiple" in a else "select")
        elif tag == "option" and self._open is not None:
            self._open.options.append(a.get("value", ""))
            if "selected" in a:
                self._open.selected.append(a.get("value", ""))
        elif tag == "textarea":
            self._open = Field(a["name"], "textarea")

    def handle_data(self, data: str) -> None:
        if self._open is not None and self._open.kind == "textarea":
            self._open.value += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag in ("select", "textarea") and self._open is not None:
            if self._open.kind == "textarea" and self._open.value.startswith("\n"):
                self._open.value = self._open.value[1:]
            self.fields.append(self._open)
            self._open = None


def form_fields(html: str, form_id: str) -> list[Field]:
    parser = _FormParser(form_id)
    parser.feed(html)
    return parser.fields


def post_data(fields: list[Field]) -> PostData:
    data: PostData = {}
    for f in fields:
        if f.kind in ("checkbox", "radio"):
            if f.checked:
                data.setdefault(f.name, []).append(f.value)
        elif f.kind == "select":
            chosen = f.selected[:1] or f.options[:1]
            data[f.name] = chosen
        elif f.kind == "select-multiple":
            data[f.name] = list(f.selected)
        else:
            data.setdefault(f.name, []).append(f.value)
    return data


def one_field_changed(fields: list[Field]) -> Iterator[tuple[str, PostData]]:
    """The form's data with one field changed, for each field that can be changed, in page order."""
    for index, f in enumerate(fields):
        changed = Field(f.name, f.kind, f.value, f.checked, list(f.options), list(f.selected))
        if f.kind in _TEXT or f.kind == "textarea":
            changed.value = f"{f.value} walk" if f.value else "walk"
        elif f.kind == "number":
            changed.value = str(int(f.value or 0) + 1)
        elif f.kind == "checkbox":
            changed.checked = not f.checked
        elif f.kind == "select":
            others = [o for o in f.options if o and o not in f.selected]
            if not others:
                continue
            changed.selected = others[:1]
        elif f.kind == "select-multiple":
            if not f.options:
                continue
            first = f.options[0]
            changed.selected = (
                [s for s in f.selected if s != first] if first in f.selected else [*f.selected, first]
            )
        else:
            continue
        yield f.name, post_data([*fields[:index], changed, *fields[index + 1 :]])
