"""The decision hot path, one folder: `POST /api/v1/decisions` from the WSGI entry to the answer.

`endpoint` (in front of Django's middleware, in `config.wsgi`) -> `request` (parses the body) ->
`service.decide_columns` (never raises; fails closed) -> `masking.selectors` (the epoch counters and
the cached policy snapshot, grants) -> `engine.Policy.decide` (pure, memoised; conditions in `cel`,
bounded by `cel_cost`) -> `audit.services.record_unmask_decisions` -> the response. `apis` is
Django's URL route for the same path and the access-event API. Nothing here imports `jitaccess`.
"""
