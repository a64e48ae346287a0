"""Directory sync (SCIM): SCIM ids for people (every existing person gets one, so the IdP can link
people who signed in before sync was turned on) and DirectoryGroup beside Django's Group."""

import uuid

import django.db.models.deletion
from django.db import migrations, models


def give_scim_ids(apps, schema_editor):
    User = apps.get_model("identity", "User")
    for pk in User.objects.filter(scim_id__isnull=True).values_list("pk", flat=True):
        User.objects.filter(pk=pk).update(scim_id=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("identity", "0002_personal_tokens"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="scim_external_id",
            field=models.CharField(blank=True, db_index=True, max_length=255),
        ),
        migrations.AddField(
            model_name="user",
            name="scim_id",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(give_scim_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="user",
            name="scim_id",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.CreateModel(
            name="DirectoryGroup",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("scim_id", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ("scim_external_id", models.CharField(blank=True, db_index=True, max_length=255)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "group",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE, related_name="directory", to="auth.group"
                    ),
                ),
            ],
            options={"ordering": ["group__name"]},
        ),
    ]
