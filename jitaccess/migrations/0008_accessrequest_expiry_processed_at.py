from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("jitaccess", "0007_notification_skipped_state"),
    ]

    operations = [
        migrations.AlterField(
            model_name="accessrequest",
            name="ended_at",
            field=models.DateTimeField(
                blank=True, help_text="When access ended: for an expiry, the grant's expires_at", null=True
            ),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="expiry_processed_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the sweep recorded the expiry (later than ended_at if it was late)",
                null=True,
            ),
        ),
    ]
