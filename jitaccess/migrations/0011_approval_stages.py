import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("identity", "0003_directory_sync"),
        ("jitaccess", "0010_approval_oncall"),
    ]

    operations = [
        migrations.AddField(
            model_name="accessrequest",
            name="stage",
            field=models.PositiveSmallIntegerField(
                default=1, help_text="Which stage waits or decided, from 1"
            ),
        ),
        migrations.AddField(
            model_name="accessrequest",
            name="stages",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="The policy's stages when the request was made (name, approver_roles, approvals_required), in order; empty for a policy without stages",
            ),
        ),
        migrations.AddField(
            model_name="approval",
            name="stage",
            field=models.PositiveSmallIntegerField(default=1, help_text="The stage it was given at, from 1"),
        ),
        migrations.AddField(
            model_name="notification",
            name="stage",
            field=models.PositiveSmallIntegerField(
                default=1,
                help_text="The request's approval stage when it was announced (whose approvers it asks)",
            ),
        ),
        migrations.AlterField(
            model_name="accessrequest",
            name="approvals_required",
            field=models.PositiveSmallIntegerField(
                default=1, help_text="Of the stage waiting (the only one when the policy has no stages)"
            ),
        ),
        migrations.AlterField(
            model_name="accessrequest",
            name="approver_roles",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="Of the stage waiting; a snapshot of the policy's when it opened",
            ),
        ),
        migrations.CreateModel(
            name="ApprovalStage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("position", models.PositiveSmallIntegerField()),
                (
                    "name",
                    models.CharField(
                        help_text="Says who decides at this stage, e.g. Data owner", max_length=100
                    ),
                ),
                ("approvals_required", models.PositiveSmallIntegerField(default=1)),
                ("approver_roles", models.ManyToManyField(blank=True, related_name="+", to="identity.role")),
                (
                    "policy",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="stages",
                        to="jitaccess.approvalpolicy",
                    ),
                ),
            ],
            options={
                "ordering": ["policy", "position"],
                "constraints": [
                    models.UniqueConstraint(fields=("policy", "position"), name="one_stage_per_position"),
                    models.UniqueConstraint(fields=("policy", "name"), name="stage_names_unique_in_policy"),
                ],
            },
        ),
    ]
