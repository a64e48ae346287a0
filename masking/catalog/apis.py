"""Catalog API: one view per operation, each with its own input serializer."""

from __future__ import annotations

from typing import cast

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import Channel
from identity.authentication import TokenScope
from identity.models import ApiToken, Scope, ServiceAccount, User
from identity.services import actor_for
from masking.models import ClassificationLevel, Database, Engine, Instance, Project
from masking.permissions import ADMINISTER_POLICY
from masking.services.catalog import CatalogError, catalog_upsert, instance_changes
from shared.api import StrictSerializer


def _refuse_duplicate_names(items: list[dict], what: str) -> list[dict]:
    seen: set[str] = set()
    for item in items:
        if item["name"] in seen:
            raise ValidationError(f"duplicate {what} name {item['name']!r}")
        seen.add(item["name"])
    return items


class ColumnIn(StrictSerializer):
    name = serializers.CharField(max_length=128, trim_whitespace=False)
    data_type = serializers.CharField(max_length=128, required=False, allow_blank=True)
    classification_level = serializers.ChoiceField(
        choices=ClassificationLevel.choices, required=False, allow_null=True
    )
    tags = serializers.ListField(child=serializers.SlugField(max_length=64), required=False, max_length=32)
    semantic_type = serializers.SlugField(max_length=64, required=False, allow_null=True, allow_blank=True)


class TableIn(StrictSerializer):
    name = serializers.CharField(max_length=128, trim_whitespace=False)
    columns = ColumnIn(many=True, allow_empty=False)

    def validate_columns(self, value: list[dict]) -> list[dict]:
        return _refuse_duplicate_names(value, "column")


class SchemaIn(StrictSerializer):
    name = serializers.CharField(max_length=128, allow_blank=True, trim_whitespace=False)
    tables = TableIn(many=True)

    def validate_tables(self, value: list[dict]) -> list[dict]:
        return _refuse_duplicate_names(value, "table")


class DatabaseIn(StrictSerializer):
    name = serializers.CharField(max_length=128, trim_whitespace=False)
    project = serializers.SlugField(max_length=64, required=False)
    schemas = SchemaIn(many=True)

    def validate_schemas(self, value: list[dict]) -> list[dict]:
        return _refuse_duplicate_names(value, "schema")


class InstanceIn(StrictSerializer):
    id = serializers.SlugField(max_length=64)
    title = serializers.CharField(max_length=200, required=False, allow_blank=True)
    engine = serializers.ChoiceField(choices=Engine.choices, default=Engine.POSTGRESQL)
    environment = serializers.SlugField(max_length=64)


class CatalogUpsertApi(APIView):
    """Upsert one instance's catalog (databases, schemas, tables, columns). Idempotent."""

    permission_classes = [TokenScope]
    token_scope = Scope.CATALOG_WRITE

    class CatalogUpsertInputSerializer(StrictSerializer):
        instance = InstanceIn()
        databases = DatabaseIn(many=True, allow_empty=False)
        prune = serializers.BooleanField(default=False)

        def validate_databases(self, value: list[dict]) -> list[dict]:
            _refuse_duplicate_names(value, "database")
            total = sum(len(t["columns"]) for db in value for s in db["schemas"] for t in s["tables"])
            if total > settings.CATALOG_UPSERT_MAX_COLUMNS:
                raise ValidationError(
                    f"{total} columns; at most {settings.CATALOG_UPSERT_MAX_COLUMNS} in one push"
                )
            return value

    class CatalogUpsertOutputSerializer(serializers.Serializer):
        instance = serializers.CharField()
        created = serializers.DictField(child=serializers.IntegerField())
        updated_columns = serializers.IntegerField()
        unchanged_columns = serializers.IntegerField()
        deleted_columns = serializers.IntegerField()
        classification_changes = serializers.IntegerField()

    @extend_schema(
        operation_id="catalog_upsert",
        request=CatalogUpsertInputSerializer,
        responses={200: CatalogUpsertOutputSerializer},
        description="Push an instance's schema. Omitted classification, tags and semantic type are kept.",
    )
    def post(self, request: Request) -> Response:
        serializer = self.CatalogUpsertInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        payload = serializer.validated_data
        self._check_object_permissions(request, payload)
        # TokenScope lets in only a token's service account or a signed-in person.
        principal = cast("User | ServiceAccount", request.user)
        try:
            summary = catalog_upsert(
                instance_spec=payload["instance"],
                databases=payload["databases"],
                prune=payload["prune"],
                actor=actor_for(principal),
                channel=Channel.API,
            )
        except CatalogError as exc:
            raise ValidationError({exc.field: [exc.message]}) from exc
        return Response(self.CatalogUpsertOutputSerializer(summary.as_dict()).data, status=status.HTTP_200_OK)

    def _check_object_permissions(self, request: Request, payload: dict) -> None:
        """People need `administer_policy` on every project the push touches; tokens need the scope.

        Changing an existing instance (its environment, engine or title) touches every database on
        it, whichever project owns them: conditions read `environment_id` (an approval policy may
        auto-approve staging), so it needs `administer_policy` on all of those projects."""
        if isinstance(request.auth, ApiToken):
            return
        spec = payload["instance"]
        keys = {db.get("project") for db in payload["databases"] if db.get("project")}
        on_instance = Database.objects.filter(instance__key=spec["id"])
        keys |= set(
            on_instance.filter(name__in=[db["name"] for db in payload["databases"]]).values_list(
                "project__key", flat=True
            )
        )
        instance = Instance.objects.filter(key=spec["id"]).first()
        if instance is not None and instance_changes(instance, spec):
            keys |= set(on_instance.values_list("project__key", flat=True))
        for project in Project.objects.filter(key__in=keys):
            if not request.user.has_perm(ADMINISTER_POLICY, project):
                raise PermissionDenied(f"You cannot administer policy in project {project.key}.")
