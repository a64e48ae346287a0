from django.db import models


class Customer(models.Model):
    """The shop's customers table, as the program's unmanaged model reads it."""

    email = models.TextField()
    first_name = models.TextField()

    class Meta:
        managed = False
        db_table = "customers"

    def __str__(self) -> str:
        return f"customer {self.pk}"
