"""A minimal Django program that reads the shop through the Veil backend, as a customer's would
(run in its own process by test_recipes.py)."""
