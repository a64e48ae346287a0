"""A Django database backend that enforces Veil's decisions on one database alias.

In settings, for the alias that reads production data (never ``default``)::

    DATABASES["shop"] = {
        "ENGINE": "veil_sdk.contrib.django",
        "NAME": "shop", "HOST": ..., "USER": ...,
        "OPTIONS": {"veil": {"client": "myproject.veil.client", "instance": "prod-pg"}},
    }

``client`` is the dotted path of a ``VeilClient`` (one per process). Queries run for the
principal set with ``veil_sdk.psycopg.acting_as(user(request.user.email))``, typically by a
middleware; a query that reads a catalog column with no principal set is refused.
"""
