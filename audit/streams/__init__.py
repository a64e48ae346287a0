"""Audit streaming: the log pushed to destinations (SIEM collectors, webhooks) in chain order.

- `config`: what a destination may be (https, a public address unless allowed, a filter that can
  match) and its secrets, kept encrypted;
- `http`: the one outgoing HTTP client, pinned to the address it checked (no SSRF by DNS tricks,
  no redirects followed);
- `services`: the audited writes admins make (add, change, disable, enable, replay, remove);
- `delivery`: what a worker does: claim a destination, send the next batch after its cursor,
  signed, and move the cursor only when the destination acknowledged it.

docs/audit.md, "Streaming", says what a receiver gets and how it verifies it.
"""
