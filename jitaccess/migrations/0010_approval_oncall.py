# On-call approval (issue 18, item 2): an approval policy may name a PagerDuty or Opsgenie
# schedule; a request keeps a snapshot of it and the note of the shift that approved it at once.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jitaccess', '0009_access_reviews'),
    ]

    operations = [
        migrations.AddField(
            model_name='approvalpolicy',
            name='oncall_provider',
            field=models.CharField(blank=True, choices=[('pagerduty', 'PagerDuty'), ('opsgenie', 'Opsgenie')], max_length=20),
        ),
        migrations.AddField(
            model_name='approvalpolicy',
            name='oncall_schedule_id',
            field=models.CharField(blank=True, help_text="The provider's schedule ID", max_length=100),
        ),
        migrations.AddField(
            model_name='approvalpolicy',
            name='oncall_responder_auto_approve',
            field=models.BooleanField(default=False, help_text="Approve the person on call's own requests at once"),
        ),
        migrations.AddField(
            model_name='approvalpolicy',
            name='oncall_responder_max_duration',
            field=models.DurationField(blank=True, help_text='Longest such request approved at once', null=True),
        ),
        migrations.AddField(
            model_name='accessrequest',
            name='oncall_provider',
            field=models.CharField(blank=True, help_text="Snapshot of the policy's", max_length=20),
        ),
        migrations.AddField(
            model_name='accessrequest',
            name='oncall_schedule_id',
            field=models.CharField(blank=True, help_text="Snapshot of the policy's", max_length=100),
        ),
        migrations.AddField(
            model_name='accessrequest',
            name='oncall_note',
            field=models.TextField(blank=True, help_text='Which on-call schedule and shift approved it at once, when one did'),
        ),
    ]
