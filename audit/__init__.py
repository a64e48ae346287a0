"""The audit log: hash-chained, append-only, signed checkpoints; reports and exports over it.

Public to the other apps (import-linter's `audit-public` contract holds the rest back):
`models` (events, decision records, access events), `services` (`record_event`, the only writer,
and `Actor`/`Target`), `events` (`register_event_types`: each app declares its actions and their
words), `access` (`register_projects`: who may read which project's events), `failures` (counted
refusals), `exports` (`cli_actor`), `admin` (`AuditedAdmin`, `ReadOnlyAdmin`) and
`reports.agents` (`register_column_projects`). Pages, APIs, URLs, filters, template tags and
commands are assembled by `config`. audit imports no other Veil app: what it needs of them is
registered at start-up by theirs.
"""
