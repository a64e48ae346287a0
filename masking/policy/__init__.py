"""Policy as code and the policy pages: the whole policy as one document and what is done with it.

`document` (sections, canonical form, YAML/JSON), `sections` (masking's parts of the document),
`diff` and `warnings` (plans between two documents), `scope` and `access` (who may read and change
which part), `edits` (one item in, one item out), `display` (how a plan reads), `bytebase` (import),
`forms`, `views` and `item_views` (the pages), `apis` (the policy API) and `urls` (their routes).
Writes go through `masking.services.policy_changes` and `masking.services.versions`.
"""
