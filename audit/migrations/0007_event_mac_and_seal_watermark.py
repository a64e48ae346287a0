"""Per-event MACs, and the sealing watermark as a function the runtime role may call.

`audit_committed_watermark` takes the SHARE lock that `audit.selectors.committed_watermark` needs.
PostgreSQL lets only a role with UPDATE, DELETE or TRUNCATE on a table lock it in SHARE mode, and the
runtime role has none of these on the append-only tables (`manage.py audit db-roles`), so the lock
is taken by this SECURITY DEFINER function, owned by the role that runs migrations. It accepts only
the two sealed tables, and its search_path is fixed (pg_temp last) so no caller can shadow them.
"""

from django.db import migrations, models

SEALED = ("audit_decisionrecord", "audit_accessevent")


def create_watermark_function(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    allowed = ", ".join(f"'{name}'" for name in SEALED)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT quote_ident(current_schema())")
        schema = cursor.fetchone()[0]
        # No parameters: the body's % signs are PL/pgSQL's, not placeholders.
        cursor.execute(
            f"""
        CREATE OR REPLACE FUNCTION audit_committed_watermark(table_name text) RETURNS bigint
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
        DECLARE top bigint;
        BEGIN
            IF table_name NOT IN ({allowed}) THEN
                RAISE EXCEPTION 'audit_committed_watermark: % is not a sealed table', table_name;
            END IF;
            PERFORM set_config('lock_timeout', '500ms', true);
            EXECUTE format('LOCK TABLE {schema}.%I IN SHARE MODE', table_name);
            EXECUTE format('SELECT coalesce(max(id), 0) FROM {schema}.%I', table_name) INTO top;
            RETURN top;
        END $$
        """
        )
        cursor.execute("REVOKE ALL ON FUNCTION audit_committed_watermark(text) FROM PUBLIC")


def drop_watermark_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS audit_committed_watermark(text)")


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0006_verification_runs"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="mac",
            field=models.CharField(
                blank=True,
                db_default="",
                help_text="HMAC of seq and hash with a key kept outside the database (audit.signing.event_mac).",
                max_length=64,
            ),
        ),
        migrations.RunPython(create_watermark_function, drop_watermark_function),
    ]
