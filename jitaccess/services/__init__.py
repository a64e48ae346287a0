"""Writes for just-in-time access. Every function follows one pattern: check (raise `RequestError`
naming the field, or `InvalidTransition` naming the current state), then in one transaction lock the
request row (`SELECT ... FOR UPDATE`), apply the state machine, write the grant through `masking`,
the audit event and the outbox notifications. Two approvers clicking at once therefore serialise on
the row: the second sees the first's result and either adds its approval or is told the request's
state.

- `requests`: create, approve, deny, cancel (and the pieces `breakglass` shares with them).
- `grants`: revoke or relinquish, end on deactivation, the sweep (expiry, time-outs, notices).
- `breakglass`: take, review.
- `notifications`: `notify`, the outbox writer every announcement goes through.
- `access_settings`: the audit record of a change of a project's request and break-glass settings.

The checks they make are reads, in `jitaccess.selectors` (`approvers`, `scopes`); the refusals are
`jitaccess.errors`.
"""
