"""`manage.py audit streams ...`: list, add, disable, enable, replay, rotate-secret, remove.

Every change goes through `audit.streams.services`, recorded as done by the operating-system
account that ran the command. Secrets are read from files (`-`: standard input), never from the
command line, where `ps` and shell history would keep them; a secret Veil makes is printed once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError
from django.utils import timezone

from audit.exports import cli_actor
from audit.models import AuditStream, ChainHead, Channel, StreamFormat
from audit.streams import services
from audit.streams.config import StreamConfigError


def add_arguments(sub: Any) -> None:
    streams = sub.add_parser("streams", help="Audit streams: list, add, disable, enable, replay, remove.")
    commands = streams.add_subparsers(dest="streams_command", required=True)
    listing = commands.add_parser("list", help="Every destination, its cursor and its state.")
    listing.add_argument(
        "--check",
        action="store_true",
        help="Exit 1 when a destination is disabled or failing (for monitoring).",
    )
    add = commands.add_parser("add", help="Add a destination (prints its signing secret once).")
    add.add_argument("name")
    add.add_argument("--url", required=True)
    add.add_argument("--format", choices=StreamFormat.values, default=StreamFormat.VEIL)
    add.add_argument("--action", default="", help="Only events of this type or prefix.")
    add.add_argument("--project", default="", help="Only events of this project.")
    add.add_argument("--secret-file", help="A file holding the signing secret (default: Veil makes one).")
    add.add_argument("--auth-header", default="", help="A header the destination authenticates with.")
    add.add_argument("--auth-value-file", help="A file holding that header's value ('-': standard input).")
    add.add_argument(
        "--after-seq",
        type=int,
        help="Send the events after this one (default: the chain head now; 0: the whole log).",
    )
    disable = commands.add_parser("disable", help="Stop sending to a destination (its cursor is kept).")
    disable.add_argument("name")
    disable.add_argument("--reason", default="disabled from the command line")
    enable = commands.add_parser("enable", help="Send again, catching up from the cursor.")
    enable.add_argument("name")
    replay = commands.add_parser("replay", help="Send the events after a seq again.")
    replay.add_argument("name")
    replay.add_argument("--after-seq", type=int, required=True)
    rotate = commands.add_parser("rotate-secret", help="Make a new signing secret (printed once).")
    rotate.add_argument("name")
    remove = commands.add_parser("remove", help="Remove a destination.")
    remove.add_argument("name")


def _read(path: str, what: str) -> str:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"{what}: cannot read {path}: {exc.strerror or exc}") from exc
    return text.strip()


def _stream(name: str) -> AuditStream:
    stream = AuditStream.objects.filter(name=name).first()
    if stream is None:
        known = ", ".join(AuditStream.objects.values_list("name", flat=True)) or "none"
        raise CommandError(f"no audit stream named {name!r} (streams: {known})")
    return stream


def handle(options: dict[str, Any], write: Any) -> None:
    command = options["streams_command"]
    actor, channel = cli_actor(), Channel.CLI
    try:
        if command == "list":
            _list(options, write)
        elif command == "add":
            secret = _read(options["secret_file"], "--secret-file") if options["secret_file"] else None
            auth_value = (
                _read(options["auth_value_file"], "--auth-value-file") if options["auth_value_file"] else ""
            )
            stream, made = services.stream_create(
                name=options["name"],
                url=options["url"],
                format=options["format"],
                action=options["action"],
                project=options["project"],
                secret=secret,
                auth_header=options["auth_header"],
                auth_value=auth_value,
                after_seq=options["after_seq"],
                actor=actor,
                channel=channel,
            )
            write(f"added audit stream {stream.name}: events after #{stream.last_seq} go to {stream.url}")
            if secret is None:
                write(f"signing secret (shown once; give it to the receiver): {made}")
        elif command == "rotate-secret":
            _, made = services.stream_rotate_secret(
                stream_id=_stream(options["name"]).pk, actor=actor, channel=channel
            )
            write(
                f"new signing secret for {options['name']} (shown once; the old one no longer signs): {made}"
            )
        elif command == "disable":
            services.stream_disable(
                stream_id=_stream(options["name"]).pk, reason=options["reason"], actor=actor, channel=channel
            )
            write(f"disabled {options['name']}")
        elif command == "enable":
            stream = services.stream_enable(
                stream_id=_stream(options["name"]).pk, actor=actor, channel=channel
            )
            write(f"enabled {stream.name}: it catches up from #{stream.last_seq}")
        elif command == "replay":
            stream = services.stream_replay(
                stream_id=_stream(options["name"]).pk,
                after_seq=options["after_seq"],
                actor=actor,
                channel=channel,
            )
            write(f"{stream.name} will receive the events after #{stream.last_seq} again")
        elif command == "remove":
            services.stream_delete(stream_id=_stream(options["name"]).pk, actor=actor, channel=channel)
            write(f"removed {options['name']}")
    except StreamConfigError as exc:
        flag = {"after_seq": "--after-seq", "secret": "--secret-file", "auth_value": "--auth-value-file"}
        raise CommandError(
            f"{flag.get(exc.field, '--' + exc.field.replace('_', '-'))}: {exc.message}"
        ) from exc


def _list(options: dict[str, Any], write: Any) -> None:
    head = ChainHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
    streams = list(AuditStream.objects.all())
    if not streams:
        write("no audit streams")
    now = timezone.now()
    troubled = []
    for stream in streams:
        state = "enabled" if stream.enabled else f"DISABLED ({stream.disabled_reason})"
        filters = " ".join(
            f"{k}={v}" for k, v in (("action", stream.action), ("project", stream.project)) if v
        )
        write(
            f"{stream.name}\t{state}\t{stream.format}\t{stream.url}\t{filters or 'all events'}\t"
            f"through #{stream.last_seq}, {max(head - stream.last_seq, 0)} behind the head"
        )
        if stream.failures:
            retry = stream.next_attempt_at
            when = (
                f"retry in {max((retry - now).total_seconds(), 0):.0f} s" if retry and stream.enabled else ""
            )
            write(f"\t{stream.failures} failure(s) in a row; last: {stream.last_error} {when}".rstrip())
        if not stream.enabled or stream.failures:
            troubled.append(stream.name)
    if options["check"] and troubled:
        raise CommandError(f"audit streams disabled or failing: {', '.join(troubled)}")
