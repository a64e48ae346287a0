"""Approval policies, jitaccess's part of the policy as code, and the policy pages it owns.

- `matching`: which approval policy a request matches (CEL over `request.*`), and condition checks.
- `services`: saving, deleting and reordering approval policies (each a policy change, versioned).
- `sections`: the `approval_policies` section of the policy document (registered at start-up).
- `insights`: what requests, denials and failed sign-ins say about the policy (reads).
- `views`, `forms`, `urls`: the approval-policy and insights pages, in masking's `policy:` namespace
  and through its review flow (`masking.policy.review`).
"""
