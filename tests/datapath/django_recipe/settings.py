"""The program's settings: its own database is SQLite; `shop` is production data through Veil."""

import os

SECRET_KEY = "recipe-test-only"
INSTALLED_APPS = ["tests.datapath.django_recipe"]
USE_TZ = True
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    "shop": {
        "ENGINE": "veil_sdk.contrib.django",
        "NAME": os.environ["RECIPE_SHOP_DB"],
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "USER": "postgres",
        "OPTIONS": {
            "veil": {
                "client": "tests.datapath.django_recipe.program.client",
                "instance": "prod-pg",
                "database": "shop",
            }
        },
    },
}
