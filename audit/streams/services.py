"""The audited writes to audit streams: every change to where evidence goes is in the log.

Each service locks the stream's row (FOR UPDATE, waiting for a batch in flight to finish, see
`delivery`), changes it and records one event in the same transaction. Events name the stream as
`Target("audit_stream", pk, name)` and carry its settings (`before`/`after` on a change), never a
secret: a new secret shows as `secret_rotated`, a new auth value as `auth_value_changed`.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.models import AuditStream, ChainHead, Channel, StreamFormat
from audit.services import SYSTEM, Actor, Target, record_event
from audit.streams.config import (
    StreamConfigError,
    check_auth_header,
    check_filter,
    new_secret,
    resolve_target,
    seal_secret,
    secret_key,
)

SETTINGS = ("name", "url", "format", "action", "project", "auth_header", "enabled")


def stream_settings(stream: AuditStream) -> dict[str, Any]:
    """What the log records of a stream: its settings and cursor, no secret."""
    return {**{name: getattr(stream, name) for name in SETTINGS}, "last_seq": stream.last_seq}


def _target(stream: AuditStream) -> Target:
    return Target("audit_stream", str(stream.pk), stream.name)


def check_stream(
    *,
    url: str,
    format: str,
    action: str,
    project: str,
    secret: str | None,
    auth_header: str,
    auth_value: str | None,
) -> None:
    """Refuse settings that cannot work, naming the field (StreamConfigError). `secret` and
    `auth_value` None mean "unchanged"."""
    if format not in StreamFormat.values:
        raise StreamConfigError("format", f"choose one of {', '.join(StreamFormat.values)}")
    resolve_target(url)
    check_filter(action=action, project=project)
    if secret is not None:
        secret_key(secret)
    # None keeps the stored value, which was checked when it was set.
    kept = "kept" if auth_header else ""
    check_auth_header(auth_header, auth_value if auth_value is not None else kept)


def _head_seq() -> int:
    return ChainHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0


@transaction.atomic
def stream_create(
    *,
    name: str,
    url: str,
    format: str = StreamFormat.VEIL,
    action: str = "",
    project: str = "",
    secret: str | None = None,
    auth_header: str = "",
    auth_value: str = "",
    after_seq: int | None = None,
    actor: Actor,
    channel: str,
) -> tuple[AuditStream, str]:
    """Add a destination. It receives events after `after_seq` (default: the chain head now, so
    only what happens from now; 0 sends the whole log). Returns the stream and its signing secret
    (made here when not given), which is shown once and stored only encrypted."""
    if AuditStream.objects.filter(name=name).exists():
        raise StreamConfigError("name", f"a stream named {name!r} exists")
    check_stream(
        url=url,
        format=format,
        action=action,
        project=project,
        secret=secret,
        auth_header=auth_header,
        auth_value=auth_value,
    )
    if after_seq is not None and after_seq < 0:
        raise StreamConfigError("after_seq", "must be 0 or more")
    secret = secret or new_secret()
    stream = AuditStream.objects.create(
        name=name,
        url=url,
        format=format,
        action=action,
        project=project,
        secret=seal_secret(secret),
        auth_header=auth_header,
        auth_value=seal_secret(auth_value),
        last_seq=_head_seq() if after_seq is None else after_seq,
    )
    record_event(
        action="audit.stream_created",
        actor=actor,
        channel=channel,
        target=_target(stream),
        detail={"after": stream_settings(stream)},
    )
    return stream, secret


def _locked(stream_id: int) -> AuditStream:
    return AuditStream.objects.select_for_update().get(pk=stream_id)


@transaction.atomic
def stream_update(
    *,
    stream_id: int,
    url: str,
    format: str,
    action: str,
    project: str,
    auth_header: str,
    auth_value: str | None = None,
    secret: str | None = None,
    actor: Actor,
    channel: str,
) -> AuditStream:
    """Change a destination's settings. `secret` or `auth_value` None keeps the stored one; the
    cursor stays where it is (`stream_replay` moves it)."""
    stream = _locked(stream_id)
    check_stream(
        url=url,
        format=format,
        action=action,
        project=project,
        secret=secret,
        auth_header=auth_header,
        auth_value=auth_value,
    )
    if auth_header and auth_value is None and not stream.auth_value:
        raise StreamConfigError("auth_value", f"give the value of the {auth_header} header")
    before = stream_settings(stream)
    stream.url, stream.format, stream.action, stream.project = url, format, action, project
    stream.auth_header = auth_header
    if not auth_header:
        stream.auth_value = ""
    elif auth_value is not None:
        stream.auth_value = seal_secret(auth_value)
    if secret is not None:
        stream.secret = seal_secret(secret)
    stream.save()
    record_event(
        action="audit.stream_updated",
        actor=actor,
        channel=channel,
        target=_target(stream),
        detail={
            "before": before,
            "after": stream_settings(stream),
            "secret_rotated": secret is not None,
            "auth_value_changed": auth_value is not None,
        },
    )
    return stream


@transaction.atomic
def stream_rotate_secret(*, stream_id: int, actor: Actor, channel: str) -> tuple[AuditStream, str]:
    """Give a destination a new signing secret (returned once); the old one stops signing at once."""
    stream = _locked(stream_id)
    secret = new_secret()
    stream.secret = seal_secret(secret)
    stream.save(update_fields=["secret"])
    record_event(
        action="audit.stream_updated",
        actor=actor,
        channel=channel,
        target=_target(stream),
        detail={"before": stream_settings(stream), "after": stream_settings(stream), "secret_rotated": True},
    )
    return stream, secret


@transaction.atomic
def stream_disable(*, stream_id: int, reason: str, actor: Actor, channel: str) -> AuditStream:
    """Stop sending to a destination; its cursor stays, so enabling it again catches up."""
    stream = _locked(stream_id)
    stream.enabled, stream.disabled_reason = False, reason[:500]
    stream.save(update_fields=["enabled", "disabled_reason"])
    record_event(
        action="audit.stream_disabled",
        actor=actor,
        channel=channel,
        target=_target(stream),
        detail={"reason": stream.disabled_reason, "last_seq": stream.last_seq, "failures": stream.failures},
    )
    return stream


@transaction.atomic
def stream_enable(*, stream_id: int, actor: Actor, channel: str) -> AuditStream:
    """Send to a destination again, at once and from its cursor, with a fresh count of failures."""
    stream = _locked(stream_id)
    stream.enabled, stream.disabled_reason = True, ""
    stream.failures, stream.next_attempt_at = 0, None
    stream.save(update_fields=["enabled", "disabled_reason", "failures", "next_attempt_at"])
    record_event(
        action="audit.stream_enabled",
        actor=actor,
        channel=channel,
        target=_target(stream),
        detail={"last_seq": stream.last_seq},
    )
    return stream


@transaction.atomic
def stream_replay(*, stream_id: int, after_seq: int, actor: Actor, channel: str) -> AuditStream:
    """Move a destination's cursor back (or forward) so it receives the events after `after_seq`
    again: for a receiver that lost what it stored. Receivers deduplicate on `seq`."""
    if after_seq < 0:
        raise StreamConfigError("after_seq", "must be 0 or more")
    head = _head_seq()
    if after_seq > head:
        raise StreamConfigError("after_seq", f"the chain ends at #{head}")
    stream = _locked(stream_id)
    before = stream.last_seq
    stream.last_seq, stream.next_attempt_at = after_seq, None
    stream.save(update_fields=["last_seq", "next_attempt_at"])
    record_event(
        action="audit.stream_replayed",
        actor=actor,
        channel=channel,
        target=_target(stream),
        detail={"before": {"last_seq": before}, "after": {"last_seq": after_seq}},
    )
    return stream


@transaction.atomic
def stream_delete(*, stream_id: int, actor: Actor, channel: str) -> None:
    stream = _locked(stream_id)
    detail = {"before": stream_settings(stream)}
    target = _target(stream)
    stream.delete()
    record_event(action="audit.stream_deleted", actor=actor, channel=channel, target=target, detail=detail)


def stream_disabled_by_veil(stream: AuditStream, *, reason: str) -> None:
    """Called by delivery, holding the row lock, after too many consecutive failures."""
    stream.enabled, stream.disabled_reason = False, reason[:500]
    stream.save(update_fields=["enabled", "disabled_reason"])
    record_event(
        action="audit.stream_disabled",
        actor=SYSTEM,
        channel=Channel.SYSTEM,
        target=_target(stream),
        detail={"reason": stream.disabled_reason, "last_seq": stream.last_seq, "failures": stream.failures},
    )
