from django.db import migrations, models


class Migration(migrations.Migration):
    """Access events carry the statement's fingerprint and the agent's tool call (issue 21), and the
    principal kind may be `agent`. Existing rows get empty values, which their canonical form leaves
    out (`audit.chain.canonical_row`), so the seals made before still verify."""

    dependencies = [
        ("audit", "0009_audit_streams"),
    ]

    operations = [
        migrations.AddField(
            model_name="accessevent",
            name="fingerprint",
            field=models.CharField(
                blank=True, default="", help_text="The statement's hash without its literals.", max_length=64
            ),
        ),
        migrations.AddField(
            model_name="accessevent",
            name="tool_call",
            field=models.JSONField(
                blank=True, default=dict, help_text="{tool, arguments: {name: JSON type}}: the agent's call."
            ),
        ),
        migrations.AlterField(
            model_name="accessevent",
            name="principal_type",
            field=models.CharField(
                choices=[("user", "Person"), ("service_account", "Service account"), ("agent", "Agent (MCP)")],
                max_length=20,
            ),
        ),
    ]
