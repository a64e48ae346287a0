"""Reads customers through the ORM as the person named on the command line; prints JSON:
the rows, the rows of a streamed iterator(), and what a filter on email answered."""

import json
import os
import sys

import django
from veil_sdk import VeilClient, user

client = VeilClient(os.environ["RECIPE_VEIL_URL"], os.environ["RECIPE_VEIL_TOKEN"])


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.datapath.django_recipe.settings")
    django.setup()
    from django.db import DatabaseError
    from veil_sdk.psycopg import acting_as

    from tests.datapath.django_recipe.models import Customer

    out: dict = {}
    shop = Customer.objects.using("shop")
    try:
        list(shop.values_list("email"))
    except DatabaseError as error:  # Django wraps psycopg's error, which carries the SQLSTATE
        out["nobody"] = error.__cause__.sqlstate
    with acting_as(user(sys.argv[1])):
        out["rows"] = list(shop.order_by("id").values_list("id", "email"))
        out["streamed"] = list(shop.order_by("id").values_list("email", flat=True).iterator(chunk_size=5))
        try:
            out["filtered"] = list(shop.filter(email__startswith="c").values_list("id", flat=True))
        except DatabaseError as error:
            out["filtered"] = error.__cause__.sqlstate
    client.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
