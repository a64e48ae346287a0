"""One realistic synthetic policy, shared by every bench and expressed for every engine.

- a catalog of a few thousand columns: six instances (prod and staging of PostgreSQL, MySQL and a
  warehouse), four projects, hand-written core tables plus generated ones;
- 19 semantic types and 20 ordered masking rules whose CEL conditions look at environment,
  instance, schema, table, column, classification and tags;
- 8 standing exemptions (by group, role, user and service account; two of them expiring);
- named principals (alice, bob, carol, ...) with a few grants each, plus a population of N
  grants spread over N/4 other principals (a quarter of them already expired).

Conditions are written once as a tiny AST (`eq`, `one_of`, `prefix`, `suffix`, `tag`, `any_tag`,
`all_`, `any_`) and rendered to CEL (Veil and the CEL peers), Cedar and Rego, so every engine is
given the same policy; the engine bench checks they also give the same answers.

Everything is deterministic (seeded) and built in process; `bench.db` loads the same fixture into
PostgreSQL through Veil's own services.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from masking.catalog.classification import suggest_classification
from masking.decisions.engine import (
    CatalogColumn,
    ColumnKey,
    ExemptionView,
    Policy,
    Principal,
    RuleView,
    SemanticTypeView,
)

SEED = 20240611
HOUR = 3600
DAY = 24 * HOUR

# ---------------------------------------------------------------------------------------------
# Conditions: a small AST rendered to CEL, Cedar and Rego.

Cond = tuple[Any, ...]
TRUE: Cond = ("true",)


def eq(f: str, v: str) -> Cond:
    return ("eq", f, v)


def one_of(f: str, *vs: str) -> Cond:
    return ("in", f, tuple(vs))


def prefix(f: str, s: str) -> Cond:
    return ("prefix", f, s)


def suffix(f: str, s: str) -> Cond:
    return ("suffix", f, s)


def tag(t: str) -> Cond:
    return ("tag", t)


def any_tag(*ts: str) -> Cond:
    return ("any_tag", tuple(ts))


def all_(*cs: Cond) -> Cond:
    return ("and", tuple(cs))


def any_(*cs: Cond) -> Cond:
    return ("or", tuple(cs))


def _q(s: str) -> str:
    return json.dumps(s)


# How each leaf of the AST reads in CEL and in Cedar; `_render` joins them with && and ||.
_CEL_LEAVES: dict[str, Callable[[Cond], str]] = {
    "true": lambda c: "true",
    "not_empty": lambda c: f'resource.{c[1]} != ""',
    "eq": lambda c: f"resource.{c[1]} == {_q(c[2])}",
    "in": lambda c: f"resource.{c[1]} in [{', '.join(_q(v) for v in c[2])}]",
    "prefix": lambda c: f"resource.{c[1]}.startsWith({_q(c[2])})",
    "suffix": lambda c: f"resource.{c[1]}.endsWith({_q(c[2])})",
    "tag": lambda c: f"{_q(c[1])} in resource.tags",
    "any_tag": lambda c: f"resource.tags.exists(t, t in [{', '.join(_q(v) for v in c[1])}])",
}
_CEDAR_LEAVES: dict[str, Callable[[Cond], str]] = {
    "true": lambda c: "true",
    "not_empty": lambda c: f'resource.{c[1]} != ""',
    "eq": lambda c: f"resource.{c[1]} == {_q(c[2])}",
    "in": lambda c: f"[{', '.join(_q(v) for v in c[2])}].contains(resource.{c[1]})",
    "prefix": lambda c: f'resource.{c[1]} like "{c[2]}*"',
    "suffix": lambda c: f'resource.{c[1]} like "*{c[2]}"',
    "tag": lambda c: f"resource.tags.contains({_q(c[1])})",
    "any_tag": lambda c: f"resource.tags.containsAny([{', '.join(_q(v) for v in c[1])}])",
}


def _render(c: Cond, leaves: Mapping[str, Callable[[Cond], str]]) -> str:
    """CEL and Cedar share the boolean syntax: only the leaves differ."""
    op = c[0]
    if op not in ("and", "or"):
        return leaves[op](c)
    joiner = " && " if op == "and" else " || "
    return joiner.join(
        f"({_render(x, leaves)})" if x[0] in ("and", "or") else _render(x, leaves) for x in c[1]
    )


def to_cel(c: Cond) -> str:
    return _render(c, _CEL_LEAVES)


def to_cedar(c: Cond) -> str:
    return _render(c, _CEDAR_LEAVES)


def dnf(c: Cond) -> list[list[Cond]]:
    """Disjunctive normal form: Rego ORs by repeating a rule, ANDs inside one body."""
    op = c[0]
    if op == "true":
        return [[]]
    if op == "or":
        return [conj for x in c[1] for conj in dnf(x)]
    if op == "and":
        out: list[list[Cond]] = [[]]
        for x in c[1]:
            out = [a + b for a in out for b in dnf(x)]
        return out
    return [[c]]


def to_rego_lines(conj: Sequence[Cond], var: str = "r") -> list[str]:
    lines = []
    for n, c in enumerate(conj):
        op = c[0]
        if op == "not_empty":
            lines.append(f'{var}.{c[1]} != ""')
        elif op == "eq":
            lines.append(f"{var}.{c[1]} == {_q(c[2])}")
        elif op == "in":
            lines.append(f"{var}.{c[1]} in {{{', '.join(_q(v) for v in c[2])}}}")
        elif op == "prefix":
            lines.append(f"startswith({var}.{c[1]}, {_q(c[2])})")
        elif op == "suffix":
            lines.append(f"endswith({var}.{c[1]}, {_q(c[2])})")
        elif op == "tag":
            lines.append(f"{_q(c[1])} in {var}.tags")
        elif op == "any_tag":
            lines.append(f"some t{n} in {var}.tags")
            lines.append(f"t{n} in {{{', '.join(_q(v) for v in c[1])}}}")
        else:  # pragma: no cover - dnf() leaves only leaves
            raise ValueError(op)
    return lines


# ---------------------------------------------------------------------------------------------
# The policy.

SEMANTIC_TYPES: list[tuple[str, str, dict[str, Any]]] = [
    ("email", "Email address", {"type": "email"}),
    ("email-hash", "Email, hashed", {"type": "md5", "salt": "bench"}),
    ("phone", "Phone number", {"type": "show_last", "n": 2, "substitution": "*"}),
    ("person-name", "Person name", {"type": "default_partial"}),
    ("birth-date", "Birth date", {"type": "date_year"}),
    ("card-number", "Card number", {"type": "show_last", "n": 4, "substitution": "*"}),
    ("bank-account", "Bank account", {"type": "show_last", "n": 4, "substitution": "*"}),
    ("national-id", "National identifier", {"type": "full", "substitution": "******"}),
    ("secret", "Credential or token", {"type": "full", "substitution": "******"}),
    ("health", "Health data", {"type": "full", "substitution": "******"}),
    ("salary", "Compensation", {"type": "full", "substitution": "******"}),
    ("address", "Postal address", {"type": "full", "substitution": "******"}),
    ("ip-address", "IP address", {"type": "md5", "salt": "bench"}),
    ("device", "Device identifier", {"type": "md5", "salt": "bench"}),
    ("free-text", "Free text", {"type": "full", "substitution": "******"}),
    ("geo", "Geolocation", {"type": "full", "substitution": "******"}),
    ("gdpr", "GDPR-tagged", {"type": "full", "substitution": "******"}),
    ("restricted", "Highly restricted", {"type": "full", "substitution": "******"}),
    ("pii-default", "Other PII", {"type": "default_partial"}),
]

# (title, condition, semantic type), in precedence order: the first match wins.
RULES: list[tuple[str, Cond, str]] = [
    (
        "Card data (PCI)",
        any_(tag("pci"), one_of("column_name", "card_number", "cc_number", "pan")),
        "card-number",
    ),
    (
        "National identifiers",
        one_of("column_name", "ssn", "national_id", "tax_id", "vat_number"),
        "national-id",
    ),
    (
        "Credentials and tokens",
        any_(
            tag("secret"), suffix("column_name", "_token"), one_of("column_name", "password_hash", "api_key")
        ),
        "secret",
    ),
    ("Health data", any_(tag("health"), prefix("table_name", "medical_")), "health"),
    ("Bank accounts", one_of("column_name", "iban", "account_number", "bank_account"), "bank-account"),
    (
        "Compensation (HR)",
        all_(
            eq("project_id", "hr"),
            any_(suffix("column_name", "_salary"), one_of("column_name", "salary", "bonus")),
        ),
        "salary",
    ),
    (
        "Emails in prod",
        all_(
            eq("environment_id", "prod"),
            one_of("column_name", "email", "email_address", "billing_email", "contact_email"),
        ),
        "email",
    ),
    (
        "Warehouse emails, hashed",
        all_(prefix("instance_id", "prod-warehouse"), suffix("column_name", "_email")),
        "email-hash",
    ),
    ("Phone numbers", one_of("column_name", "phone", "mobile", "phone_number"), "phone"),
    ("Birth dates", one_of("column_name", "birth_date", "dob", "date_of_birth", "birth_year"), "birth-date"),
    (
        "People's names in prod",
        all_(eq("environment_id", "prod"), one_of("column_name", "first_name", "last_name", "full_name")),
        "person-name",
    ),
    (
        "IP addresses",
        any_(one_of("column_name", "ip_address", "client_ip", "last_login_ip"), suffix("column_name", "_ip")),
        "ip-address",
    ),
    (
        "Postal addresses",
        any_(
            prefix("column_name", "address"),
            suffix("column_name", "_address"),
            one_of("column_name", "street", "postcode"),
        ),
        "address",
    ),
    (
        "Device identifiers in audit and raw data",
        all_(
            any_(prefix("table_name", "audit_"), eq("schema_name", "raw")),
            one_of("column_name", "user_agent", "device_id"),
        ),
        "device",
    ),
    (
        "Support free text",
        all_(
            one_of("table_name", "support_notes", "tickets", "chat_messages"),
            one_of("column_name", "body", "message", "notes"),
        ),
        "free-text",
    ),
    ("Geolocation", one_of("column_name", "latitude", "longitude", "lat", "lng", "geo_point"), "geo"),
    ("GDPR-tagged in prod", all_(eq("environment_id", "prod"), tag("gdpr")), "gdpr"),
    (
        "Highly restricted in prod",
        all_(eq("environment_id", "prod"), eq("classification_level", "4")),
        "restricted",
    ),
    ("Personal data in prod", all_(eq("environment_id", "prod"), any_tag("pii", "personal")), "pii-default"),
    (
        "Restricted PII in staging",
        all_(eq("environment_id", "staging"), one_of("classification_level", "3", "4"), tag("pii")),
        "pii-default",
    ),
]

# What Veil decides outside the rules, as statements for the peers (threshold: level 3).
STATEMENTS: list[tuple[str, Cond]] = [
    ("semantic_type", ("not_empty", "semantic_type")),
    ("classified", one_of("classification_level", "3", "4")),
    ("suggested", all_(eq("classification_level", ""), one_of("suggested_level", "3", "4"))),
]

# instance -> environment, engine; databases: (instance suffix, database, project, schemas)
INSTANCES = [
    ("prod-pg", "prod", "postgresql"),
    ("staging-pg", "staging", "postgresql"),
    ("prod-mysql", "prod", "mysql"),
    ("staging-mysql", "staging", "mysql"),
    ("prod-warehouse", "prod", "snowflake"),
    ("staging-warehouse", "staging", "snowflake"),
]
PROJECTS = {"shop": "Shop", "billing": "Billing", "hr": "People", "analytics": "Analytics"}

ColumnSpec = tuple[str, str, int | None, tuple[str, ...], str | None]  # name, type, level, tags, st

_P = ("pii",)
CORE: dict[tuple[str, str], dict[str, list[ColumnSpec]]] = {
    ("shop", "public"): {
        "customers": [
            ("id", "bigint", 1, (), None),
            ("email", "text", 3, _P, None),
            ("phone", "text", 3, _P, None),
            ("first_name", "text", 2, _P, None),
            ("last_name", "text", 2, _P, None),
            ("birth_date", "date", 3, _P, None),
            ("address_line1", "text", 3, _P, None),
            ("city", "text", 2, (), None),
            ("postcode", "text", 2, (), None),
            ("country", "text", 1, (), None),
            ("marketing_opt_in", "boolean", 1, ("gdpr",), None),
            ("loyalty_tier", "text", None, (), None),
            ("created_at", "timestamp with time zone", 1, (), None),
        ],
        "orders": [
            ("id", "bigint", 1, (), None),
            ("customer_id", "bigint", 1, (), None),
            ("total_cents", "integer", 1, (), None),
            ("currency", "text", 0, (), None),
            ("shipping_address", "text", 3, _P, None),
            ("billing_address", "text", 3, _P, None),
            ("ip_address", "inet", 2, (), None),
            ("user_agent", "text", None, (), None),
            ("status", "text", 0, (), None),
            ("notes", "text", None, (), None),
            ("created_at", "timestamp with time zone", 1, (), None),
        ],
        "payments": [
            ("id", "bigint", 1, (), None),
            ("order_id", "bigint", 1, (), None),
            ("card_number", "text", 4, ("pci",), None),
            ("card_last4", "text", 2, ("pci",), None),
            ("iban", "text", 4, (), None),
            ("processor_token", "text", 4, ("secret",), None),
            ("amount_cents", "integer", 1, (), None),
            ("status", "text", 0, (), None),
        ],
        "support_notes": [
            ("id", "bigint", 1, (), None),
            ("customer_id", "bigint", 1, (), None),
            ("author_id", "bigint", 1, (), None),
            ("body", "text", None, ("free-text",), None),
            ("created_at", "timestamp with time zone", 1, (), None),
        ],
        "staff_users": [
            ("id", "bigint", 1, (), None),
            ("username", "text", 1, (), None),
            ("email", "text", 3, _P, "email"),
            ("password_hash", "text", 4, ("secret",), None),
            ("api_token", "text", 4, ("secret",), None),
            ("last_login_ip", "inet", 2, (), None),
        ],
        "audit_logins": [
            ("id", "bigint", 1, (), None),
            ("user_id", "bigint", 1, (), None),
            ("ip_address", "inet", 2, (), None),
            ("user_agent", "text", 2, (), None),
            ("device_id", "text", 2, (), None),
            ("created_at", "timestamp with time zone", 1, (), None),
        ],
    },
    ("billing", "public"): {
        "invoices": [
            ("id", "bigint", 1, (), None),
            ("customer_id", "bigint", 1, (), None),
            ("amount_cents", "integer", 1, (), None),
            ("vat_number", "text", 2, (), None),
            ("billing_email", "text", 3, _P, None),
            ("billing_address", "text", 3, _P, None),
            ("iban", "text", 4, (), None),
            ("paid_at", "timestamp with time zone", 1, (), None),
        ],
        "refunds": [
            ("id", "bigint", 1, (), None),
            ("invoice_id", "bigint", 1, (), None),
            ("reason", "text", None, (), None),
            ("account_number", "text", 4, (), "bank-account"),
        ],
    },
    ("hr", ""): {
        "employees": [
            ("id", "bigint", 1, (), None),
            ("first_name", "varchar", 2, _P, None),
            ("last_name", "varchar", 2, _P, None),
            ("email", "varchar", 3, _P, None),
            ("mobile", "varchar", 3, _P, None),
            ("ssn", "varchar", 4, _P, None),
            ("birth_date", "date", 3, _P, None),
            ("salary", "decimal", 3, (), None),
            ("bonus", "decimal", 3, (), None),
            ("home_address", "varchar", 3, _P, None),
            ("manager_id", "bigint", 1, (), None),
            ("hired_at", "date", 1, (), None),
        ],
        "payroll_runs": [
            ("id", "bigint", 1, (), None),
            ("employee_id", "bigint", 1, (), None),
            ("gross_salary", "decimal", 3, (), None),
            ("net_salary", "decimal", 3, (), None),
            ("tax_id", "varchar", 4, (), None),
            ("iban", "varchar", 4, (), None),
            ("paid_at", "date", 1, (), None),
        ],
        "medical_leaves": [
            ("id", "bigint", 1, (), None),
            ("employee_id", "bigint", 1, (), None),
            ("diagnosis", "varchar", 4, ("health",), None),
            ("started_at", "date", 1, (), None),
        ],
    },
    ("warehouse", "marts"): {
        "customer_ltv": [
            ("customer_id", "bigint", 1, (), None),
            ("email", "varchar", 3, _P, None),
            ("ltv_cents", "bigint", 1, (), None),
            ("segment", "varchar", 1, ("etl-visible",), None),
        ],
        "dim_customers": [
            ("customer_id", "bigint", 1, (), None),
            ("customer_email", "varchar", 3, _P, None),
            ("country", "varchar", 1, ("etl-visible",), None),
            ("city", "varchar", 2, ("etl-visible",), None),
            ("birth_year", "integer", 2, (), None),
            ("signup_at", "timestamp", 1, (), None),
        ],
        "fct_orders": [
            ("order_id", "bigint", 1, (), None),
            ("customer_id", "bigint", 1, (), None),
            ("total_cents", "bigint", 1, (), None),
            ("client_ip", "varchar", 2, (), None),
            ("latitude", "double", 2, (), None),
            ("longitude", "double", 2, (), None),
        ],
    },
    ("warehouse", "raw"): {
        "events": [
            ("event_id", "varchar", 1, (), None),
            ("user_id", "bigint", 1, (), None),
            ("ip_address", "varchar", 2, (), None),
            ("user_agent", "varchar", 2, (), None),
            ("device_id", "varchar", 2, ("etl-visible",), None),
            ("payload", "variant", None, ("free-text",), None),
            ("occurred_at", "timestamp", 1, (), None),
        ],
    },
}

# instance -> [(database, project, [schemas])]
DATABASES = {
    "pg": [("shop", "shop", ["public"]), ("billing", "billing", ["public"])],
    "mysql": [("hr", "hr", [""])],
    "warehouse": [("warehouse", "analytics", ["marts", "raw"])],
}

# Columns generated tables draw from: (name, type, level, tags, weight)
VOCABULARY: list[tuple[str, str, int | None, tuple[str, ...], int]] = [
    ("id", "bigint", 1, (), 0),
    ("created_at", "timestamp", 1, (), 6),
    ("updated_at", "timestamp", 1, (), 5),
    ("status", "text", 0, (), 5),
    ("amount_cents", "integer", 1, (), 3),
    ("currency", "text", 0, (), 2),
    ("quantity", "integer", 1, (), 2),
    ("sku", "text", 1, (), 2),
    ("description", "text", 1, (), 3),
    ("notes", "text", None, (), 2),
    ("email", "text", 3, _P, 3),
    ("contact_email", "text", 3, _P, 1),
    ("phone", "text", 3, _P, 2),
    ("first_name", "text", 2, _P, 2),
    ("last_name", "text", 2, _P, 2),
    ("full_name", "text", 2, _P, 1),
    ("birth_date", "date", 3, _P, 1),
    ("street", "text", 3, _P, 1),
    ("postcode", "text", 2, (), 1),
    ("city", "text", 2, (), 1),
    ("country", "text", 1, (), 2),
    ("ip_address", "inet", 2, (), 1),
    ("user_agent", "text", 2, (), 1),
    ("device_id", "text", 2, (), 1),
    ("api_token", "text", 4, ("secret",), 1),
    ("iban", "text", 4, (), 1),
    ("tax_id", "text", 4, (), 1),
    ("latitude", "double", 2, (), 1),
    ("longitude", "double", 2, (), 1),
    ("external_ref", "text", 1, (), 2),
    ("score", "double", 1, (), 2),
    ("is_active", "boolean", 0, (), 2),
    ("comment", "text", None, ("free-text",), 1),
    ("nickname", "text", None, ("personal",), 1),
    ("mail_address", "text", None, (), 1),
]
_DOMAINS = ["acct", "cart", "promo", "ship", "stock", "fx", "ledger", "crm", "ops", "ml", "geo", "kyc"]


@dataclass(frozen=True)
class Column:
    key: ColumnKey
    project: str
    environment: str
    data_type: str
    level: int | None
    tags: tuple[str, ...]
    semantic_type: str | None
    suggested: int | None

    def catalog_column(self) -> CatalogColumn:
        return CatalogColumn(
            self.key,
            self.project,
            self.environment,
            self.level,
            self.tags,
            self.semantic_type,
            self.suggested,
        )

    def facts(self) -> dict[str, Any]:
        """Veil's CEL `resource` plus the two facts Veil decides on outside the rules."""
        facts = self.catalog_column().resource()
        facts["semantic_type"] = self.semantic_type or ""
        facts["suggested_level"] = "" if self.suggested is None else str(self.suggested)
        return facts


@dataclass(frozen=True)
class PrincipalSpec:
    kind: str  # "user" or "service_account"
    name: str  # username or service-account name
    id: str  # in-process id: the user's "pk" or the account's name
    groups: tuple[str, ...] = ()
    direct_roles: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{'user' if self.kind == 'user' else 'sa'}:{self.id}"


@dataclass(frozen=True)
class ExemptionSpec:
    id: int
    reason: str
    project: str
    condition: Cond
    expires_in: int | None  # seconds from `now`; None: standing without expiry
    users: tuple[str, ...] = ()  # usernames
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()


@dataclass(frozen=True)
class GrantSpec:
    id: int
    principal_key: str
    project: str
    instance: str
    database: str
    schema: str | None
    table: str | None
    columns: tuple[str, ...]
    expires_in: int  # seconds from `now`; negative: already expired
    request_ref: str

    def condition_ast(self) -> Cond:
        parts = [eq("instance_id", self.instance), eq("database_name", self.database)]
        if self.schema is not None:
            parts.append(eq("schema_name", self.schema))
        if self.table is not None:
            parts.append(eq("table_name", self.table))
        if self.columns:
            parts.append(one_of("column_name", *sorted(set(self.columns))))
        return all_(*parts)


# Roles are granted to groups (and etl to a service account), as in the demo company.
ROLES: dict[str, tuple[str, ...]] = {
    "engineers": ("engineering",),
    "pii-approvers": ("approvers",),
    "support-agents": ("support",),
    "security-oncall": ("security",),
    "compliance": ("compliance",),
    "finance": ("finance",),
    "dba": ("dba",),
    "etl": (),
}

NAMED_PRINCIPALS = [
    PrincipalSpec("user", "alice", "101", ("engineering",)),
    PrincipalSpec("user", "bob", "102", ("engineering", "approvers")),
    PrincipalSpec("user", "carol", "103", ("support",)),
    PrincipalSpec("user", "dave", "104", ("compliance",)),
    PrincipalSpec("user", "erin", "105", ("security", "approvers")),
    PrincipalSpec("user", "frank", "106", ("data-eng",)),
    PrincipalSpec("user", "gina", "107", ("finance", "dba")),
    PrincipalSpec("user", "hank", "108", ()),
    PrincipalSpec("service_account", "etl-loader", "etl-loader", (), ("etl",)),
    PrincipalSpec("service_account", "report-bot", "report-bot", ()),
]

EXEMPTIONS = [
    ExemptionSpec(1, "Security on-call sees all of shop", "shop", TRUE, None, groups=("security",)),
    ExemptionSpec(
        2,
        "Support agents: customer contact details",
        "shop",
        all_(
            one_of("table_name", "customers", "support_notes"),
            one_of("column_name", "email", "phone", "first_name", "last_name", "body"),
        ),
        None,
        roles=("support-agents",),
    ),
    ExemptionSpec(
        3,
        "Data engineering: staging analytics",
        "analytics",
        eq("environment_id", "staging"),
        None,
        groups=("data-eng",),
    ),
    ExemptionSpec(
        4, "DBAs: staging billing", "billing", eq("environment_id", "staging"), None, roles=("dba",)
    ),
    ExemptionSpec(
        5, "Payroll audit until year end", "hr", prefix("table_name", "payroll_"), 30 * DAY, users=("dave",)
    ),
    ExemptionSpec(
        6,
        "ETL: columns tagged etl-visible",
        "analytics",
        tag("etl-visible"),
        None,
        roles=("etl",),
        service_accounts=("report-bot",),
    ),
    ExemptionSpec(
        7,
        "Engineers: staging shop PII",
        "shop",
        all_(eq("environment_id", "staging"), tag("pii")),
        None,
        groups=("engineering",),
    ),
    ExemptionSpec(
        8,
        "Finance: prod invoices this quarter",
        "billing",
        all_(eq("environment_id", "prod"), eq("table_name", "invoices")),
        90 * DAY,
        roles=("finance",),
    ),
]

# The named principals' grants: (username, instance, database, schema, table, columns, expires_in)
NAMED_GRANTS: list[tuple[str, str, str, str | None, str | None, tuple[str, ...], int]] = [
    ("alice", "prod-pg", "shop", "public", "customers", ("email", "phone"), HOUR),
    ("alice", "prod-pg", "shop", "public", "orders", ("ip_address", "shipping_address"), 2 * HOUR),
    ("alice", "prod-pg", "shop", "public", "customers", ("birth_date",), -10 * 60),
    ("alice", "prod-warehouse", "warehouse", None, None, (), DAY),
    ("bob", "prod-pg", "shop", "public", "customers", ("email",), 3 * HOUR),
    ("bob", "prod-pg", "shop", "public", "payments", (), 4 * HOUR),
    ("carol", "prod-pg", "shop", "public", "orders", ("shipping_address",), HOUR),
    ("frank", "prod-warehouse", "warehouse", "marts", "dim_customers", (), 6 * HOUR),
    ("hank", "prod-mysql", "hr", "", "employees", ("email", "mobile"), -HOUR),
    ("hank", "prod-mysql", "hr", "", "employees", ("email",), 30 * 60),
    ("etl-loader", "prod-warehouse", "warehouse", "raw", "events", ("ip_address",), 12 * HOUR),
]

# The 20-column query of the timed request: SELECT c.*, o.* FROM customers c JOIN orders o ...
QUERY_TABLES = [("customers", 11), ("orders", 9)]
GRANT_ID_BASE = 1000


@dataclass
class Fixture:
    now: float
    columns: dict[ColumnKey, Column]
    tables: dict[tuple[str, str, str, str], list[Column]]  # (instance, database, schema, table) -> columns
    principals: dict[str, PrincipalSpec]  # by name, named and population
    grants: list[GrantSpec]
    grants_by_principal: dict[str, list[GrantSpec]] = field(default_factory=dict)
    _grant_views: dict[int, ExemptionView] = field(default_factory=dict, repr=False)

    # -- Veil's engine objects ---------------------------------------------------------------
    def policy(self) -> Policy:
        """A fresh snapshot (empty memo tables) of the in-process policy."""
        return Policy(
            version=1,
            columns={k: c.catalog_column() for k, c in self.columns.items()},
            semantic_types={k: SemanticTypeView(k, t, a) for k, t, a in SEMANTIC_TYPES},
            rules=[RuleView(n, title, to_cel(cond), st) for n, (title, cond, st) in enumerate(RULES, 1)],
            exemptions=[self.exemption_view(e) for e in EXEMPTIONS],
            mask_classified_from=3,
        )

    def exemption_view(self, e: ExemptionSpec) -> ExemptionView:
        return ExemptionView(
            id=e.id,
            kind="exemption",
            project=e.project,
            condition="" if e.condition == TRUE else to_cel(e.condition),
            expires_at=None if e.expires_in is None else self.now + e.expires_in,
            users=frozenset(self.principals[u].id for u in e.users),
            groups=frozenset(e.groups),
            roles=frozenset(e.roles),
            service_accounts=frozenset(e.service_accounts),
        )

    def grant_view(self, g: GrantSpec) -> ExemptionView:
        view = self._grant_views.get(g.id)
        if view is None:
            view = self._grant_views[g.id] = ExemptionView(
                id=g.id,
                kind="grant",
                project=g.project,
                condition=grant_cel(g),
                expires_at=self.now + g.expires_in,
                users=frozenset({g.principal_key[5:]})
                if g.principal_key.startswith("user:")
                else frozenset(),
                service_accounts=(
                    frozenset({g.principal_key[3:]}) if g.principal_key.startswith("sa:") else frozenset()
                ),
                request_ref=g.request_ref,
            )
        return view

    def grants_of(self, principal: PrincipalSpec) -> list[ExemptionView]:
        """What the server hands the engine: the principal's grants (here with any expiry)."""
        return [self.grant_view(g) for g in self.grants_by_principal.get(principal.key, ())]

    def principal(self, name: str) -> Principal:
        spec = self.principals[name]
        return Principal(spec.kind, spec.id, spec.name, frozenset(spec.groups), frozenset(roles_of(spec)))

    def query(self, tables: Sequence[tuple[str, int]] = QUERY_TABLES) -> list[ColumnKey]:
        keys: list[ColumnKey] = []
        for table, n in tables:
            keys += [c.key for c in self.tables[("prod-pg", "shop", "public", table)][:n]]
        return keys

    def sample_columns(self, principal: PrincipalSpec, n: int = 150) -> list[ColumnKey]:
        """The timed query, random catalog columns, and the columns of the principal's grants."""
        rng = random.Random(f"{SEED}-{principal.name}")
        keys = self.query() + rng.sample(sorted(self.columns), n)
        for g in self.grants_by_principal.get(principal.key, ()):
            for (inst, db, schema, table), cols in self.tables.items():
                if (
                    (inst, db) == (g.instance, g.database)
                    and g.schema in (None, schema)
                    and g.table in (None, table)
                ):
                    keys += [c.key for c in cols][:12]
        return list(dict.fromkeys(keys))


def roles_of(spec: PrincipalSpec) -> set[str]:
    return set(spec.direct_roles) | {r for r, groups in ROLES.items() if set(groups) & set(spec.groups)}


def grant_cel(g: GrantSpec) -> str:
    """The grant's CEL, from Veil's own `grant_condition` (needs Django configured)."""
    from masking.services.policy import grant_condition

    return grant_condition(
        instance=g.instance, database=g.database, schema=g.schema, table=g.table, columns=g.columns
    )


def _catalog(rng: random.Random) -> dict[ColumnKey, Column]:
    columns: dict[ColumnKey, Column] = {}
    vocabulary = [v for v in VOCABULARY if v[4] > 0]
    weights = [v[4] for v in vocabulary]
    for instance, environment, _engine in INSTANCES:
        family = instance.split("-", 1)[1]
        for database, project, schemas in DATABASES[family]:
            for schema in schemas:
                tables = dict(CORE.get((database, schema), {}))
                # Generated tables: same names in prod and staging (seeded per database), like real copies.
                trng = random.Random(f"{SEED}-{database}-{schema}")
                for n in range(55 if family != "mysql" else 80):
                    kind = trng.choice(["events", "items", "facts", "log", "state"])
                    name = f"{trng.choice(_DOMAINS)}_{kind}_{n}"
                    picked: dict[str, ColumnSpec] = {"id": ("id", "bigint", 1, (), None)}
                    for _ in range(trng.randint(5, 14)):
                        cname, ctype, level, ctags, _w = trng.choices(vocabulary, weights)[0]
                        if trng.random() < 0.15:
                            level = None  # not yet classified: the suggestion decides
                        st = "email" if cname == "email" and trng.random() < 0.3 else None
                        picked.setdefault(cname, (cname, ctype, level, ctags, st))
                    tables[name] = list(picked.values())
                for table, specs in tables.items():
                    for cname, ctype, level, ctags, st in specs:
                        if environment == "staging" and rng.random() < 0.05:
                            level = None  # staging copies lag behind on classification
                        suggestion = suggest_classification(cname, ctype)
                        key = ColumnKey(instance, database, schema, table, cname)
                        columns[key] = Column(
                            key,
                            project,
                            environment,
                            ctype,
                            level,
                            tuple(sorted(set(ctags))),
                            st,
                            suggestion.level if suggestion else None,
                        )
    return columns


def build(total_grants: int = 2000, *, now: float, seed: int = SEED) -> Fixture:
    """The fixture with `total_grants` grants in the system (named principals' included)."""
    rng = random.Random(seed)
    columns = _catalog(rng)
    tables: dict[tuple[str, str, str, str], list[Column]] = {}
    for c in columns.values():
        tables.setdefault((c.key.instance, c.key.database, c.key.schema, c.key.table), []).append(c)
    principals = {p.name: p for p in NAMED_PRINCIPALS}
    grants: list[GrantSpec] = []
    for n, (who, inst, db, schema, table, cols, expires_in) in enumerate(NAMED_GRANTS):
        spec = principals[who]
        project = next(c.project for c in columns.values() if (c.key.instance, c.key.database) == (inst, db))
        grants.append(
            GrantSpec(
                GRANT_ID_BASE + n, spec.key, project, inst, db, schema, table, cols, expires_in, f"REQ-{n}"
            )
        )
    table_keys = sorted(tables)
    prng = random.Random(seed + 1)
    n_principals = max(1, (total_grants - len(grants)) // 4)
    population = [PrincipalSpec("user", f"user{n}", str(10_000 + n)) for n in range(n_principals)]
    for p in population[:8]:  # a few of them take part in the answer check
        principals[p.name] = p
    while len(grants) < total_grants:
        p = prng.choice(population)
        inst, db, schema, table = prng.choice(table_keys)
        cols_here = tables[(inst, db, schema, table)]
        roll = prng.random()
        if roll < 0.5:
            scope_schema, scope_table = schema, table
            cols = tuple(
                c.key.column for c in prng.sample(cols_here, min(len(cols_here), prng.randint(1, 4)))
            )
        elif roll < 0.85:
            scope_schema, scope_table, cols = schema, table, ()
        else:
            scope_schema, scope_table, cols = None, None, ()
        expires_in = prng.randint(10 * 60, 7 * DAY) if prng.random() < 0.75 else -prng.randint(60, 30 * DAY)
        n = len(grants)
        grants.append(
            GrantSpec(
                GRANT_ID_BASE + n,
                p.key,
                cols_here[0].project,
                inst,
                db,
                scope_schema,
                scope_table,
                cols,
                expires_in,
                f"REQ-{n}",
            )
        )
    by_principal: dict[str, list[GrantSpec]] = {}
    for g in grants:
        by_principal.setdefault(g.principal_key, []).append(g)
    return Fixture(now, columns, tables, principals, grants, by_principal)


# ---------------------------------------------------------------------------------------------
# Answers, in a form every engine can produce: (action, semantic type, reason kind, reason id).

Answer = tuple[str, str | None, str, int | None]
NOT_SENSITIVE: Answer = ("unmask", None, "not_sensitive", None)


def veil_answer(d: Any) -> Answer:
    return (d.action, d.semantic_type, d.reason_kind, d.reason_id)


@dataclass(frozen=True)
class Candidate:
    label: str
    kind: str
    id: int
    project: str
    expires_at: float | None


class Resolver:
    """Veil's precedence over the set of statements an engine found true for one column:
    exemption or grant > first rule > the column's semantic type > classification > not sensitive.
    Shared by the peers that answer with sets (Cedar, Rego); the CEL peers walk the same order."""

    def __init__(self, fx: Fixture) -> None:
        self.base_order: list[tuple[str, Answer | None]] = [
            (f"rule:{n}", ("mask", st, "rule", n)) for n, (_t, _c, st) in enumerate(RULES, 1)
        ]
        self.base_order += [
            ("semantic_type", None),
            ("classified", ("mask", None, "classification", None)),
            ("suggested", ("mask", None, "classification", None)),
        ]
        self.exemptions = [
            Candidate(
                f"exemption:{e.id}",
                "exemption",
                e.id,
                e.project,
                None if e.expires_in is None else fx.now + e.expires_in,
            )
            for e in EXEMPTIONS
        ]

    def candidates(self, grants: Iterable[ExemptionView]) -> list[Candidate]:
        return self.exemptions + [
            Candidate(f"grant:{g.id}", "grant", g.id, g.project, g.expires_at) for g in grants
        ]

    def base(self, column: Column, matched: Iterable[str] | set[str]) -> Answer:
        for label, answer in self.base_order:
            if label in matched:
                return answer if answer is not None else ("mask", column.semantic_type, "semantic_type", None)
        return NOT_SENSITIVE

    def resolve(self, column: Column, matched: set[str], candidates: Sequence[Candidate]) -> Answer:
        base = self.base(column, matched)
        if base[0] != "mask":
            return base
        best: Candidate | None = None
        for c in candidates:
            if c.label not in matched:
                continue
            if c.expires_at is None:
                best = c
                break
            if best is None or (best.expires_at or 0) < c.expires_at:
                best = c
        if best is None:
            return base
        return ("unmask", base[1], best.kind, best.id)
