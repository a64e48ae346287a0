"""The catalog, the masking policy (policy as code) and the decision path.

Public to jitaccess (import-linter's `masking-public` contract holds the rest back):
- `models`, `permissions` (the per-project permissions), `selectors` (reads, among them
  `columns_visible_to`: what a principal sees in clear now, as the decision path answers);
- `services` (writes: `policy.grant_create`/`exemption_revoke`, `policy_changes`, `versions`,
  `catalog`, `roles`, `guard`);
- `decisions.engine` (the decision types, pure), `decisions.cel` (the condition language),
  `decisions.service` (the decision path as a function);
- `policy.document`, `policy.edits`, `policy.display`, `policy.access`, `policy.insights` (policy
  as code and who may change it), `policy.review` (the review flow another app's policy pages end
  in) and `checks` (coverage over a snapshot).
The pages, forms, APIs, URLs, the decision endpoint and its request parsing, the admin and the
commands are not: `config` assembles them.

Folders: `decisions/` is the hot path, `policy/` policy as code and its pages, `catalog/` the
catalog's API and page, `services/` and `models/` the writes and tables of all three.
"""
