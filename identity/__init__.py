"""People (keyed on the IdP subject), IdP groups, roles, service accounts and API tokens.

Public to the other apps (import-linter's `identity-public` contract holds the rest back):
`models`, `selectors` (role membership), `services` (`actor_for`, tokens), `authentication`
(the bearer token and its scopes, for API views), `directory` (deactivation and membership
handlers other apps register) and `signin` (`client_address`). The sign-in pages, OIDC, SCIM,
the database-access pages, APIs, forms and URLs are assembled by `config`.
"""
