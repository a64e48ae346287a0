"""Reads and permission checks for just-in-time access; nothing here writes.

- `requests`: which requests a person sees (every page and API goes through `requests_visible_to`),
  the approval queue, the inbox, grants in force and the extensions asked for them.
- `approvers`: who may approve, revoke or review (the checks the services enforce).
- `stages`: a policy's approval stages as a request keeps them, and why someone may not decide at
  the stage waiting.
- `scopes`: what a scope covers, what of it is masked for the person now, how long a request for it
  may last, whether an extension may be asked.
- `column_access`: each column masked or in clear for the person now, and why, in words (the
  request form).
- `approval_preview`: which approval policy a request would fall under, who would be asked and for
  how long at most, before it is sent (the request form).
"""
