"""The whole policy as one document: sections, canonical form, YAML, and the diff of two documents.

A document maps section names (`semantic_types`, `rules`, `roles`, `exemptions`,
`approval_policies`, `projects`) to lists of items in a canonical form: fixed field order, sorted
member lists, timestamps in UTC. Export, the stored versions and a parsed file all use that form,
so two documents are equal exactly when the policies are, and a diff is a comparison of dicts.

Sections register themselves: each app that owns part of the policy registers its sections at
start-up (`masking.policy.sections` and `jitaccess.policy.sections`, imported by their app's
`ready()`). That is how approval policies (owned by `jitaccess`) join the document while `masking`
never imports `jitaccess`.

A section absent from a file is not managed by that file: planning leaves it as it is. A section
present but empty deletes everything in it. Diffs and plans are in `masking.policy.diff`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from audit.services import Actor
from identity.models import User
from shared import strict_json

FORMAT = "veil-policy/v1"
CREATE, UPDATE, DELETE, REORDER = "create", "update", "delete", "reorder"


class DocumentError(ValueError):
    """A document that cannot be planned; `path` names the place (`rules[2].condition`).

    `reason` and `name` say what was refused for a page to word it without parsing `message`:
    "duplicate" (the item's key is taken) or "unknown" (a reference to `name` does not resolve).
    """

    def __init__(self, path: str, message: str, *, reason: str = "", name: str = "") -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
        self.reason = reason
        self.name = name


@dataclass(frozen=True)
class Reference:
    """Names an item refers to, of a kind another section or the catalog defines."""

    field: str
    kind: str  # semantic_type, role, project, user, group, service_account
    names: tuple[str, ...]


@dataclass(frozen=True)
class ApplyContext:
    actor: Actor
    channel: str
    created_by: User | None = None


@dataclass
class SectionPlan:
    """What applying a document does to one section, in the order the section applies it."""

    creates: list[dict[str, Any]] = field(default_factory=list)
    updates: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    deletes: list[dict[str, Any]] = field(default_factory=list)
    orders: dict[str, list[str]] = field(default_factory=dict)  # group -> keys in their new order


class Section:
    """One part of the policy. Subclasses say how to read it from the database, check a file's
    items, and write a plan through the owning app's services."""

    name: str
    order: int
    fields: tuple[str, ...]  # canonical field order (JSON columns do not keep key order)
    provides: str | None = None  # the kind of name this section defines, for references
    ordered = False  # whether item order within a group is policy (first match wins)

    def export(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def key(self, item: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def normalize(self, raw: Mapping[str, Any], fields: Fields) -> dict[str, Any]:
        """Read one item of a file into canonical form, raising `DocumentError` through `fields`."""
        raise NotImplementedError

    def references(self, item: Mapping[str, Any]) -> list[Reference]:
        return []

    def project_of(self, item: Mapping[str, Any]) -> str | None:
        """The project an item belongs to; None for global items, which affect every project."""
        return None

    def group_of(self, item: Mapping[str, Any]) -> str:
        """Items are ordered within a group (all rules; one project's approval policies)."""
        return ""

    def prepare(
        self, target: list[dict[str, Any]], current: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Adjust a file's items against the live ones before diffing; returns warnings."""
        return target, []

    def warnings(self, item: Mapping[str, Any]) -> list[str]:
        """Warnings about an item a plan creates or updates: valid, but it may not work as meant
        (e.g. above a limit the owning app holds). Shown with the plan, never refusing it."""
        return []

    def apply(self, plan: SectionPlan, context: ApplyContext) -> None:
        """Creates, updates and the new order. Deletes come later, in reverse section order."""
        raise NotImplementedError

    def apply_deletes(self, plan: SectionPlan, context: ApplyContext) -> None:
        raise NotImplementedError


_registry: dict[str, Section] = {}


def register(section: Section) -> Section:
    _registry[section.name] = section
    return section


def sections() -> list[Section]:
    """Every registered section, in document order."""
    return sorted(_registry.values(), key=lambda s: s.order)


def section(name: str) -> Section:
    return {s.name: s for s in sections()}[name]


# --- Reading items -----------------------------------------------------------------------------


MAX_INTEGER = 32_767  # PositiveSmallIntegerField (approvals_required)
MAX_DURATION_DAYS = 3650


class Fields:
    """Typed reads of one item's fields; unknown fields are refused so a typo never does less."""

    def __init__(self, raw: Any, path: str) -> None:
        if not isinstance(raw, Mapping):
            raise DocumentError(path, "must be a mapping")
        self.raw = raw
        self.path = path
        self._known: set[str] = set()

    def error(self, name: str, message: str) -> DocumentError:
        return DocumentError(f"{self.path}.{name}", message)

    def _get(self, name: str, default: Any) -> Any:
        self._known.add(name)
        if name not in self.raw or self.raw[name] is None:
            if default is _REQUIRED:
                raise self.error(name, "is required")
            return default
        return self.raw[name]

    def string(self, name: str, default: Any = "", *, required: bool = False, max_length: int = 0) -> str:
        value = self._get(name, _REQUIRED if required else default)
        if not isinstance(value, str):
            raise self.error(name, "must be a string")
        value = value.strip()
        if required and not value:
            raise self.error(name, "must not be empty")
        if max_length and len(value) > max_length:
            raise self.error(name, f"must be at most {max_length} characters")
        return value

    def slug(self, name: str, *, required: bool = True) -> str:
        value = self.string(name, required=required, max_length=64)
        if value and not re.fullmatch(r"[-a-zA-Z0-9_]+", value):
            raise self.error(name, "must contain only letters, digits, - and _")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, "must be true or false")
        return value

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int = MAX_INTEGER) -> int:
        """An integer from `minimum` to `maximum`. The default ceiling is the smallest integer
        column a section stores a count in, so a number that passes here always fits its column."""
        value = self._get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            raise self.error(name, f"must be an integer from {minimum} to {maximum}")
        return value

    def names(self, name: str) -> list[str]:
        value = self._get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.error(name, "must be a list of names")
        return sorted({v.strip() for v in value})

    def mappings(self, name: str) -> list[Fields]:
        """A list of mappings (absent: none), each read with its own `Fields` at `name[i]`; the
        caller reads each one's fields and calls its `done()`."""
        value = self._get(name, [])
        if not isinstance(value, list):
            raise self.error(name, "must be a list of mappings")
        return [Fields(entry, f"{self.path}.{name}[{index}]") for index, entry in enumerate(value)]

    def mapping(self, name: str, default: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A mapping, required unless a `default` is given."""
        value = self._get(name, _REQUIRED if default is None else default)
        if not isinstance(value, Mapping):
            raise self.error(name, "must be a mapping")
        return canonical_mapping(value)

    def timestamp(self, name: str) -> str | None:
        value = self._get(name, None)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise self.error(name, "must be an ISO 8601 timestamp, e.g. 2030-01-31T00:00:00Z") from None
        if not isinstance(value, datetime):
            raise self.error(name, "must be an ISO 8601 timestamp")
        if value.tzinfo is None:
            raise self.error(name, "must name its time zone (end it with Z for UTC)")
        return format_timestamp(value)

    def duration(self, name: str) -> str | None:
        value = self._get(name, None)
        if value is None:
            return None
        try:
            return format_duration(parse_duration(str(value)))
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self._known)
        if unknown:
            raise self.error(str(unknown[0]), f"unknown field (known: {', '.join(sorted(self._known))})")


_REQUIRED = object()
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """`90m`, `4h`, `1d12h`: the compact durations the document uses, up to ten years (longer is
    a typo, and would not fit a duration column or `timedelta`)."""
    parts = re.findall(r"(\d+)\s*([dhms])", text.strip())
    if not parts or re.sub(r"(\d+)\s*([dhms])", "", text).strip():
        raise ValueError("must be a duration such as 30m, 4h or 2d")
    seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("must be positive")
    if seconds > MAX_DURATION_DAYS * 86400:
        raise ValueError(f"must be at most {MAX_DURATION_DAYS}d")
    return timedelta(seconds=seconds)


def format_duration(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    for unit, size in _DURATION_UNITS.items():
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def canonical_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-equal copy with `type` first and other keys sorted, recursively (algorithms)."""

    def canon(v: Any) -> Any:
        if isinstance(v, Mapping):
            keys = sorted(v, key=lambda k: (k != "type", str(k)))
            return {str(k): canon(v[k]) for k in keys}
        if isinstance(v, list | tuple):
            return [canon(x) for x in v]
        return v

    return json.loads(json.dumps(canon(value)))


# --- Documents ---------------------------------------------------------------------------------


def canonical_document(document: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Fields back in section order and mappings in canonical order: a document read from a JSON
    column compares, diffs and prints exactly like one just exported."""
    known = {s.name: s for s in sections()}
    return {
        name: [
            {
                f: canonical_mapping(item[f]) if isinstance(item[f], Mapping) else item[f]
                for f in known[name].fields
                if f in item
            }
            for item in items
        ]
        for name, items in document.items()
        if name in known
    }


def export_document() -> dict[str, list[dict[str, Any]]]:
    """The live policy, every section, in canonical form."""
    return {s.name: s.export() for s in sections()}


def parse_document(raw: Any) -> dict[str, list[dict[str, Any]]]:
    """Check a loaded file and return its sections in canonical form (absent sections omitted)."""
    if not isinstance(raw, Mapping):
        raise DocumentError("document", "must be a mapping of sections")
    known = {s.name: s for s in sections()}
    fmt = raw.get("format", FORMAT)
    if fmt != FORMAT:
        raise DocumentError("format", f"must be {FORMAT!r} (got {fmt!r})")
    unknown = sorted(set(raw) - set(known) - {"format"})
    if unknown:
        raise DocumentError(str(unknown[0]), f"unknown section (known: {', '.join(known)})")
    document: dict[str, list[dict[str, Any]]] = {}
    for name, sec in known.items():
        if name not in raw:
            continue
        items = raw[name] if raw[name] is not None else []
        if not isinstance(items, list):
            raise DocumentError(name, "must be a list")
        normalized = []
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            path = f"{name}[{index}]"
            fields = Fields(item, path)
            value = sec.normalize(item, fields)
            fields.done()
            key = sec.key(value)
            if key in seen:
                raise DocumentError(path, f"duplicate {key!r} (also {name}[{seen[key]}])", reason="duplicate")
            seen[key] = index
            normalized.append(value)
        document[name] = normalized
    return document


def load_yaml(text: str) -> dict[str, list[dict[str, Any]]]:
    raw = load_yaml_data(text, "document")
    return parse_document(raw if raw is not None else {})


class _PolicyLoader(yaml.SafeLoader):
    """PyYAML's safe loader without what made a 380-byte file expand to 1.16 GB (anchors and
    aliases) or overflow the stack (50k nested `[[...]]`): both refused as the document is
    composed, before anything is built or walked. A key given twice in one mapping (which YAML
    and JSON parsers resolve by silently keeping the last) is refused too."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _LoadError(f"line {line}: YAML anchors and aliases (&name, *name) are not accepted")
        if self.depth >= strict_json.MAX_DEPTH:
            raise _LoadError(f"line {line}: is nested more than {strict_json.MAX_DEPTH} levels deep")
        self.depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-untyped-call,return-value]
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node)  # type: ignore[no-untyped-call]
                if key in seen:
                    raise _LoadError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _LoadError(Exception):
    pass


def load_yaml_data(text: str, path: str) -> Any:
    """A YAML (or JSON) policy file as data, through `_PolicyLoader`; DocumentError at `path`."""
    try:
        return yaml.load(text, Loader=_PolicyLoader)  # noqa: S506 (a SafeLoader)
    except _LoadError as exc:
        raise DocumentError(path, str(exc)) from None
    except yaml.YAMLError as exc:
        raise DocumentError(path, f"is not valid YAML: {str(exc).splitlines()[0]}") from None


class _FlowMap(dict):  # type: ignore[type-arg]
    pass


class _FlowList(list):  # type: ignore[type-arg]
    pass


class _Dumper(yaml.SafeDumper):
    """Short lists and algorithms on one line, long text as a block: a one-field change is a
    one-line diff in code review."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(
    _FlowMap, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(), flow_style=True)
)
_Dumper.add_representer(
    _FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True)
)


def _flow(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _FlowMap(value)
    if isinstance(value, list) and all(not isinstance(v, Mapping | list) for v in value):
        return _FlowList(value)
    return value


def dump_yaml(document: Mapping[str, list[dict[str, Any]]]) -> str:
    """Stable YAML: sections in registry order, items in canonical order, fields in section order."""
    body: dict[str, Any] = {"format": FORMAT}
    document = canonical_document(document)
    for sec in sections():
        if sec.name in document:
            body[sec.name] = [{k: _flow(v) for k, v in item.items()} for item in document[sec.name]]
    header = (
        "# Veil policy. Check with `manage.py policy plan FILE`, apply with `manage.py policy apply FILE`.\n"
    )
    return header + yaml.dump(body, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100000)


SOURCE_FORMATS = ("veil", "bytebase")
MAX_SOURCE_CHARS = 5_000_000  # a policy file, pasted, uploaded or sent to the policy API


def load_source(text: str, source_format: str = "veil") -> dict[str, list[dict[str, Any]]]:
    """A policy file in Veil's YAML, or a Bytebase export (semantic types and masking rules)."""
    if source_format == "bytebase":
        from masking.policy.bytebase import load_bytebase

        return parse_document(load_bytebase(text))
    if source_format != "veil":
        raise DocumentError("format", f"unknown source format {source_format!r} (known: veil, bytebase)")
    return load_yaml(text)
