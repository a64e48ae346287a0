"""Just-in-time access: requests, approvals, break-glass, notifications and Slack.

Writes are in `services` (create, approve, deny, cancel, revoke, relinquish, sweep, break-glass),
the transition table in `states`, reads and object permissions in `selectors` (a person sees their
own requests, those of projects they oversee, and those whose approver roles they hold). An approved
request becomes a grant through `masking.services.policy.grant_create`; `masking` never imports
`jitaccess`. Notifications go through the outbox (`models.Notification`, `delivery`, `tasks`).
Nothing imports this app but `config`.
"""
