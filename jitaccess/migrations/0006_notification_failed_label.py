"""A failed notification is no longer final: an operator can put it back in the outbox."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jitaccess', '0005_request_starts_at'),
    ]

    operations = [
        migrations.AlterField(
            model_name='notification',
            name='state',
            field=models.CharField(choices=[('pending', 'Pending'), ('sent', 'Sent'), ('failed', 'Failed (gave up; an operator can retry)')], default='pending', max_length=10),
        ),
    ]
