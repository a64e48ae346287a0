"""Just-in-time access: requests, approvals, grants, break-glass, approval policies, access
reviews, notifications and Slack.

Writes are in `services/` (`requests`, `grants`, `breakglass`, `notifications`), reads and the
permission checks they enforce in `selectors/` (`requests`, `approvers`, `scopes`), the transition
table in `states`, the refusals in `errors`. `policy/` holds approval policies (jitaccess's part of
the policy as code) and the policy pages it owns; `slack/` the Slack app; `delivery` and `tasks`
send the outbox. An approved request becomes a grant through `masking.services.policy.grant_create`.
Nothing imports this app but `config` (the `layers` contract); it uses the lower apps only through
the modules their `__init__` names.
"""
