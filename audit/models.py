"""The append-only, hash-chained audit log.

Each event stores the SHA-256 of its canonical form chained to the previous event's hash, so
editing, deleting or inserting a row behind Veil's back breaks the chain at that row, and a MAC
of that hash keyed outside the database, so re-chaining a rewritten tail does not hide it. On
PostgreSQL, triggers refuse UPDATE, DELETE and TRUNCATE, and the runtime role has no privilege to
do them at all (`manage.py audit db-roles`). `audit` imports no other Veil app:
callers describe actors and targets with plain values.
"""

from __future__ import annotations

import pgtrigger
from django.contrib.postgres.indexes import OpClass
from django.db import models
from django.db.models.functions import Cast, Upper

from audit.indexes import PostgresGinIndex


class Channel(models.TextChoices):
    WEB = "web", "Web"
    API = "api", "API"
    SLACK = "slack", "Slack"
    CLI = "cli", "Command line"
    SYSTEM = "system", "System"


class ActorType(models.TextChoices):
    USER = "user", "User"
    SERVICE_ACCOUNT = "service_account", "Service account"
    SYSTEM = "system", "System"
    ANONYMOUS = "anonymous", "Anonymous"


class PrincipalKind(models.TextChoices):
    """Whom an access event's query ran for, as the data-access layer reports it."""

    USER = "user", "Person"
    SERVICE_ACCOUNT = "service_account", "Service account"
    AGENT = "agent", "Agent (MCP)"

    @classmethod
    def of(cls, principal: dict[str, object], tool_call: object) -> PrincipalKind:
        """A person; an agent (a service account whose query an agent's tool call ran, as
        veil-mcp reports it); or a service account (a job, a shared connection)."""
        if "user" in principal:
            return cls.USER
        return cls.AGENT if tool_call else cls.SERVICE_ACCOUNT


class AuditEvent(models.Model):
    """One immutable fact: who did what to which object, when, through which channel."""

    seq = models.BigIntegerField(unique=True, help_text="Position in the hash chain, from 1.")
    occurred_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=20, choices=ActorType.choices)
    actor_id = models.CharField(max_length=255, blank=True, db_index=True)
    actor_name = models.CharField(max_length=255, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=255, blank=True)
    target_repr = models.CharField(max_length=500, blank=True)
    project = models.CharField(max_length=64, blank=True, db_index=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    detail = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    mac = models.CharField(
        max_length=64,
        blank=True,
        db_default="",
        help_text="HMAC of seq and hash with a key kept outside the database (audit.signing.event_mac).",
    )

    class Meta:
        ordering = ["seq"]
        indexes = [
            models.Index(fields=["action", "occurred_at"]),
            # "the latest event of this kind" (the last seal, the last archive) without a sort.
            models.Index(fields=["action", "seq"]),
            # The search filters (person, role, instance, database, column) match substrings,
            # case-insensitively, in these four texts; a value found nowhere would otherwise read
            # the whole log. Trigram indexes (pg_trgm) on exactly the expressions `icontains`
            # compiles to. PostgreSQL only (audit.indexes).
            *(
                PostgresGinIndex(
                    OpClass(Upper(expression), name="gin_trgm_ops"), name=f"auditevent_{label}_trgm"
                )
                for label, expression in (
                    ("detail", Cast("detail", models.TextField())),
                    ("actor_id", "actor_id"),
                    ("actor_name", "actor_name"),
                    ("target_id", "target_id"),
                )
            ),
        ]
        triggers = [
            pgtrigger.Protect(name="audit_no_update_delete", operation=pgtrigger.Update | pgtrigger.Delete),
            # TRUNCATE fires no row trigger, so it needs a statement-level trigger of its own.
            pgtrigger.Trigger(
                name="audit_no_truncate",
                operation=pgtrigger.Truncate,
                level=pgtrigger.Statement,
                when=pgtrigger.Before,
                func="RAISE EXCEPTION 'audit log is append-only: TRUNCATE refused'; RETURN NULL;",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor_name or self.actor_type}"


class ChainHead(models.Model):
    """The single row that serialises writers: locked FOR UPDATE while an event is appended."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"head at #{self.seq}"


class DecisionRecord(models.Model):
    """The unmask answers of one decision request, written before the answer is sent.

    One row per request (one INSERT), so recording never multiplies the decision path's writes.
    Mask answers are not recorded: masking is the default and reveals nothing. Indexed on
    `recorded_at` only: every index is paid on the decision path, and the reports select by time.
    """

    recorded_at = models.DateTimeField(db_index=True)
    service_account = models.CharField(max_length=64)
    principal_type = models.CharField(max_length=20)
    principal_id = models.CharField(max_length=255)
    principal_name = models.CharField(max_length=255)
    query_id = models.CharField(max_length=200, blank=True)
    policy_version = models.BigIntegerField()
    asserted_groups = models.JSONField(default=list, blank=True)
    unmasked = models.JSONField(help_text="[{column, reason, id, expires_at, request}]")

    class Meta:
        ordering = ["-recorded_at"]
        triggers = [
            pgtrigger.Protect(
                name="decisionrecord_append_only", operation=pgtrigger.Update | pgtrigger.Delete
            )
        ]

    def __str__(self) -> str:
        return f"{self.principal_name}: {len(self.unmasked)} column(s) unmasked"


class AccessEvent(models.Model):
    """What a data-access layer reports it actually returned for one query."""

    received_at = models.DateTimeField(db_index=True)
    occurred_at = models.DateTimeField()
    service_account = models.CharField(max_length=64)
    principal_type = models.CharField(max_length=20, choices=PrincipalKind.choices)
    principal = models.CharField(max_length=255, db_index=True)
    query_id = models.CharField(max_length=200, blank=True, db_index=True)
    unmasked_columns = models.JSONField(default=list)
    masked_columns = models.JSONField(default=list)
    row_count = models.PositiveBigIntegerField()
    fingerprint = models.CharField(
        max_length=64, blank=True, default="", help_text="The statement's hash without its literals."
    )
    tool_call = models.JSONField(
        default=dict, blank=True, help_text="{tool, arguments: {name: JSON type}}: the agent's call."
    )

    class Meta:
        ordering = ["-occurred_at"]
        triggers = [
            pgtrigger.Protect(name="accessevent_append_only", operation=pgtrigger.Update | pgtrigger.Delete)
        ]

    def __str__(self) -> str:
        return f"{self.principal} query {self.query_id}: {self.row_count} rows"


class Checkpoint(models.Model):
    """A signed statement that the chain reached event `seq` with hash `hash` at `signed_at`.

    Signed with Veil's key, which is kept outside the database, so someone who can rewrite the
    database (and roll back both the events and the chain head) still cannot move a checkpoint:
    `audit verify` finds a checkpoint naming an event that is no longer there.
    """

    seq = models.BigIntegerField(unique=True)
    hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    key_id = models.CharField(max_length=32)
    signature = models.CharField(max_length=128, help_text="Base64 Ed25519 signature.")

    class Meta:
        ordering = ["seq"]
        triggers = [
            pgtrigger.Protect(name="checkpoint_append_only", operation=pgtrigger.Update | pgtrigger.Delete)
        ]

    def __str__(self) -> str:
        return f"checkpoint at #{self.seq}"


class ArchiveBoundary(models.Model):
    """Where the chain starts after `audit archive` removed the events before `first_seq`.

    `prev_hash` is the hash the first remaining event links to; the `*_after_id` fields are the last
    decision record and access event ids removed with the archived seals. Signed, so a boundary
    cannot be invented to hide a deleted prefix; the matching `audit.archived` event is in the chain.
    """

    first_seq = models.BigIntegerField(unique=True)
    prev_hash = models.CharField(max_length=64)
    decisions_after_id = models.BigIntegerField(default=0)
    access_events_after_id = models.BigIntegerField(default=0)
    archived_before = models.DateTimeField()
    archived_at = models.DateTimeField()
    export_sha256 = models.CharField(max_length=64)
    key_id = models.CharField(max_length=32)
    signature = models.CharField(max_length=128)

    class Meta:
        ordering = ["first_seq"]
        verbose_name_plural = "archive boundaries"
        triggers = [
            pgtrigger.Protect(
                name="archiveboundary_append_only", operation=pgtrigger.Update | pgtrigger.Delete
            )
        ]

    def __str__(self) -> str:
        return f"chain starts at #{self.first_seq} (archived before {self.archived_before:%Y-%m-%d})"


class ExportState(models.TextChoices):
    PENDING = "pending", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Ready"
    FAILED = "failed", "Failed"


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    JSONL = "jsonl", "JSON Lines"
    PDF = "pdf", "PDF summary"


class ExportJob(models.Model):
    """One export asked for from the web, written to a file by a Celery worker.

    The requester is kept as plain values (no foreign key): `audit` sits below the app that owns
    users, and a job must outlive the account that asked for it, as the evidence does.
    """

    created_at = models.DateTimeField(auto_now_add=True)
    requested_by_pk = models.BigIntegerField(null=True, blank=True)
    requested_by = models.CharField(max_length=255, blank=True)
    actor_id = models.CharField(max_length=255, blank=True)
    report = models.CharField(max_length=20)
    format = models.CharField(max_length=10, choices=ExportFormat.choices)
    filters = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=ExportState.choices, default=ExportState.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows = models.BigIntegerField(null=True, blank=True)
    file_name = models.CharField(max_length=255, blank=True)
    bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"export {self.pk}: {self.report} as {self.format} ({self.state})"


class VerificationState(models.TextChoices):
    PENDING = "pending", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Finished"
    FAILED = "failed", "Could not run"


class VerificationRun(models.Model):
    """One whole-log verification (`audit.selectors.verify_chain`) and its result: asked for from
    the dashboard ("Verify the log now") and run by a Celery worker, or run by the daily task.

    Like ExportJob this is not evidence (the chain and its signed checkpoints are); it tells a
    compliance reader when the log was last verified, by whom, and what was found. Plain values for
    the requester: `audit` imports no other Veil app, and a run outlives the account that asked.
    """

    created_at = models.DateTimeField(auto_now_add=True)
    requested_by_pk = models.BigIntegerField(null=True, blank=True)
    requested_by = models.CharField(max_length=255, blank=True)
    state = models.CharField(
        max_length=10, choices=VerificationState.choices, default=VerificationState.PENDING
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True, blank=True, help_text="Empty until the verification finished.")
    result = models.JSONField(null=True, blank=True, help_text="ChainVerification.as_dict()")
    error = models.TextField(blank=True, help_text="Why the verification could not run (not a chain break).")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "created_at"])]

    def __str__(self) -> str:
        return f"verification {self.pk} ({self.state})"


class FailureTally(models.Model):
    """Unauthenticated failures (bad Slack signatures, failed sign-ins, refused IdP callbacks),
    counted per window, action, source address and reason instead of chained one by one.

    An outsider can cause these as fast as they can send requests; chaining each would make every
    audited write queue behind them for the chain head lock. A failure is one upsert of its counter
    row here; `audit.failures.failure_tallies_fold` turns each closed window into one chained event
    per action and deletes the rows it folded. Not evidence until folded (minutes at most).
    """

    window_start = models.DateTimeField()
    action = models.CharField(max_length=64)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    source = models.CharField(max_length=64, blank=True, help_text="The client address.")
    username = models.CharField(max_length=150, blank=True, help_text="The username tried, if any.")
    reason = models.CharField(max_length=200, blank=True)
    count = models.BigIntegerField(default=1)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["window_start", "action", "source", "username", "reason"],
                name="audit_failuretally_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.action} from {self.source or '?'} x{self.count}"


class StreamFormat(models.TextChoices):
    VEIL = "veil", "Veil (JSON batch, Standard Webhooks signature)"
    SPLUNK_HEC = "splunk_hec", "Splunk HTTP Event Collector"
    DATADOG = "datadog", "Datadog logs"


class AuditStream(models.Model):
    """A destination the audit log is pushed to (a SIEM's collector, a webhook), in chain order.

    `last_seq` is the cursor: every event the filter selects up to it was acknowledged by the
    destination (2xx), so a destination that was down resumes right after it, with no gap and
    nothing reordered. Secrets are stored encrypted with a key derived from VEIL_SIGNING_KEY
    (`audit.streams.config`), never in clear. Admins configure streams through audited services
    only (`audit.streams.services`): a stream is a place evidence goes.
    """

    name = models.SlugField(max_length=64, unique=True)
    url = models.URLField(max_length=2000, help_text="Where the events are POSTed (https://).")
    format = models.CharField(max_length=20, choices=StreamFormat.choices, default=StreamFormat.VEIL)
    action = models.CharField(
        max_length=64, blank=True, help_text="Only events of this type or prefix (`grant`, `request.`)."
    )
    project = models.CharField(max_length=64, blank=True, help_text="Only events of this project.")
    secret = models.TextField(help_text="The signing secret, encrypted.")
    auth_header = models.CharField(
        max_length=64, blank=True, help_text="A header the destination authenticates with (`Authorization`)."
    )
    auth_value = models.TextField(blank=True, help_text="That header's value, encrypted.")
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    last_seq = models.BigIntegerField(default=0, help_text="Delivered through this event (the cursor).")
    failures = models.PositiveIntegerField(default=0, help_text="Consecutive failed attempts.")
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Backing off until.")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
