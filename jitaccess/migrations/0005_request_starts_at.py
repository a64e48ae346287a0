"""When a grant starts. Until now an approved extension's grant was in force from its approval,
not from the end of the grant it extends (and survived that grant's revocation); this sets the
start of every approved request and defers the grants of extensions that have not started yet."""

from django.db import migrations, models
from django.utils import timezone


def set_starts(apps, schema_editor):
    AccessRequest = apps.get_model("jitaccess", "AccessRequest")
    Exemption = apps.get_model("masking", "Exemption")
    now = timezone.now()
    approved = AccessRequest.objects.exclude(decided_at=None).exclude(expires_at=None)
    for request in approved.iterator():
        start = request.expires_at - request.duration
        AccessRequest.objects.filter(pk=request.pk).update(starts_at=start)
        if request.state == "approved" and request.grant_id and start > now:
            Exemption.objects.filter(pk=request.grant_id).update(starts_at=start)


class Migration(migrations.Migration):
    dependencies = [
        ("jitaccess", "0004_slackpolicymessage_reminded_at"),
        ("masking", "0004_grant_starts_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="accessrequest",
            name="starts_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the grant starts: at approval, or when the one it extends ends",
                null=True,
            ),
        ),
        migrations.RunPython(set_starts, migrations.RunPython.noop),
    ]
