"""Checkpoints published outside the database, and read back by `audit verify`.

A checkpoint stored only in the database proves little against someone who can rewrite the
database: they can cut the tail and remove the checkpoints that named it. So every checkpoint is
also written where the database's users cannot reach it: a log line (always), a file appended to
(`AUDIT_CHECKPOINT_PATH`, on a volume the database role cannot write) and a webhook
(`AUDIT_CHECKPOINT_WEBHOOK_URL`, e.g. a SIEM's HTTP collector). Each is one JSON object, the same
in all three; `audit verify` reads the file (or any file of such lines, log lines included) and
requires the chain to still hold every (seq, hash) they name.

Publishing is best effort after the checkpoint is committed: a failed write is logged as an error
for an alert to catch, and the next checkpoint is published all the same.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from audit import signing
from audit.models import Checkpoint

logger = logging.getLogger(__name__)

LOG_PREFIX = "audit checkpoint "


def checkpoint_record(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "type": "veil-audit-checkpoint",
        "v": 1,
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "signed_at": checkpoint.signed_at.isoformat(),
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
    }


def publish_checkpoint(checkpoint: Checkpoint) -> None:
    """Write the checkpoint to the log, and to the file and webhook when they are configured."""
    line = json.dumps(checkpoint_record(checkpoint), sort_keys=True, separators=(",", ":"))
    logger.info("%s%s", LOG_PREFIX, line)
    if path := settings.AUDIT_CHECKPOINT_PATH:
        try:
            with Path(path).open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        except OSError as exc:
            logger.error("audit checkpoint #%s not written to %s: %s", checkpoint.seq, path, exc)
    if url := settings.AUDIT_CHECKPOINT_WEBHOOK_URL:
        request = urllib.request.Request(  # noqa: S310 - an operator's http(s) URL from settings
            url, data=line.encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=5):  # noqa: S310
                pass
        except OSError as exc:
            logger.error("audit checkpoint #%s not posted to the webhook: %s", checkpoint.seq, exc)


class PublishedCheckpointError(ValueError):
    """A line of a published-checkpoints file that is not a validly signed checkpoint."""


def read_published(path: Path) -> dict[int, str]:
    """The (seq -> hash) of every checkpoint in a file of published lines (JSON objects, or log
    lines holding one after LOG_PREFIX); other lines are ignored. Raises PublishedCheckpointError
    for a checkpoint whose signature does not verify: the file itself was tampered with."""
    from audit.selectors import checkpoint_message

    keys = signing.verification_keys()
    found: dict[int, str] = {}
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            start = text.find("{")
            if start < 0 or '"veil-audit-checkpoint"' not in text:
                continue
            try:
                record = json.loads(text[start:])
                seq, digest = int(record["seq"]), str(record["hash"])
                message = checkpoint_message(
                    seq=seq, hash=digest, signed_at=datetime.fromisoformat(str(record["signed_at"]))
                )
                valid = signing.verify(
                    message, key_id=str(record["key_id"]), signature=str(record["signature"]), keys=keys
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise PublishedCheckpointError(f"{path}:{number}: not a checkpoint ({exc})") from exc
            if not valid:
                raise PublishedCheckpointError(f"{path}:{number}: checkpoint #{seq} has an invalid signature")
            found[seq] = digest
    return found
