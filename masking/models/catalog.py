"""The catalog: what data exists and how sensitive it is.

project -> database; instance (a server, in one environment) -> database -> schema -> table -> column.
This follows Bytebase's model (a database belongs to a project, an instance to an environment), so
CEL conditions written for Bytebase read the same values here.
"""

from __future__ import annotations

from django.db import models


class ClassificationLevel(models.IntegerChoices):
    """How sensitive a column is. Higher is more sensitive; NULL means not yet classified."""

    PUBLIC = 0, "0 · Public"
    INTERNAL = 1, "1 · Internal"
    CONFIDENTIAL = 2, "2 · Confidential"
    RESTRICTED = 3, "3 · Restricted (PII)"
    HIGHLY_RESTRICTED = 4, "4 · Highly restricted (government ID, card, health)"


class Engine(models.TextChoices):
    POSTGRESQL = "postgresql", "PostgreSQL"
    MYSQL = "mysql", "MySQL"
    SQLSERVER = "sqlserver", "SQL Server"
    SNOWFLAKE = "snowflake", "Snowflake"
    OTHER = "other", "Other"


class Project(models.Model):
    """A unit of ownership: databases belong to a project, and people get permissions per project."""

    class InferenceGuard(models.TextChoices):
        """What the data path does with a query that uses a masked column outside its output."""

        REFUSE = "refuse", "Refuse the query"
        AUDIT = "audit", "Run it masked and record the attempt"

    key = models.SlugField(max_length=64, unique=True, help_text="Stable id, `resource.project_id` in CEL.")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    inference_guard = models.CharField(
        max_length=10,
        choices=InferenceGuard.choices,
        default=InferenceGuard.REFUSE,
        help_text="The data path's inference guard for this project's databases (docs/data-path.md).",
    )

    class Meta:
        ordering = ["key"]
        permissions = [
            ("request_unmask", "Can request unmask in this project"),
            ("approve_request", "Can approve unmask requests in this project"),
            ("administer_policy", "Can administer masking policy in this project"),
            ("view_audit", "Can read the audit log of this project"),
        ]

    def __str__(self) -> str:
        return self.title or self.key


class SemanticType(models.Model):
    """A kind of data (email, phone, SSN) and the masking algorithm applied to it."""

    key = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    algorithm = models.JSONField(default=dict, help_text='e.g. {"type": "email"}')

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.title or self.key


class Instance(models.Model):
    """A database server in one environment (prod, staging, dev)."""

    key = models.SlugField(max_length=64, unique=True, help_text="Stable id, `resource.instance_id` in CEL.")
    title = models.CharField(max_length=200, blank=True)
    engine = models.CharField(max_length=20, choices=Engine.choices, default=Engine.POSTGRESQL)
    environment = models.SlugField(max_length=64, help_text="`resource.environment_id` in CEL.")

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class Database(models.Model):
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="databases")
    name = models.CharField(max_length=128)
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="databases")

    class Meta:
        ordering = ["instance__key", "name"]
        constraints = [models.UniqueConstraint(fields=["instance", "name"], name="database_unique_name")]

    def __str__(self) -> str:
        return f"{self.instance.key}/{self.name}"


class Schema(models.Model):
    """A namespace inside a database. Engines without schemas (MySQL) use the empty name."""

    database = models.ForeignKey(Database, on_delete=models.CASCADE, related_name="schemas")
    name = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["database", "name"], name="schema_unique_name")]

    def __str__(self) -> str:
        return f"{self.database}/{self.name}"


class Table(models.Model):
    schema = models.ForeignKey(Schema, on_delete=models.CASCADE, related_name="tables")
    name = models.CharField(max_length=128)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["schema", "name"], name="table_unique_name")]

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


class Column(models.Model):
    """A column and its classification.

    `classification_level` is a fact someone stated (an admin, or the pusher of the catalog).
    `suggested_*` is Veil's guess from the name and type: shown to admins, never used as a fact.
    """

    table = models.ForeignKey(Table, on_delete=models.CASCADE, related_name="columns")
    name = models.CharField(max_length=128)
    data_type = models.CharField(max_length=128, blank=True)
    position = models.PositiveIntegerField(default=0)
    classification_level = models.PositiveSmallIntegerField(
        choices=ClassificationLevel.choices, null=True, blank=True
    )
    tags = models.JSONField(default=list, blank=True)
    semantic_type = models.ForeignKey(
        SemanticType, null=True, blank=True, on_delete=models.SET_NULL, related_name="columns"
    )
    suggested_category = models.CharField(max_length=32, blank=True)
    suggested_level = models.PositiveSmallIntegerField(
        choices=ClassificationLevel.choices, null=True, blank=True
    )
    discovered_by_decision = models.BooleanField(
        default=False, help_text="First seen in a decision request, not in a catalog push."
    )

    class Meta:
        ordering = ["position", "name"]
        constraints = [models.UniqueConstraint(fields=["table", "name"], name="column_unique_name")]

    def __str__(self) -> str:
        return f"{self.table}.{self.name}"
