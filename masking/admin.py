from django.contrib import admin
from guardian.admin import GuardedModelAdmin

from masking.models import Column, Database, Instance, Project, Schema, SemanticType, Table


@admin.register(Project)
class ProjectAdmin(GuardedModelAdmin):
    """Object permissions (request, approve, administer policy, audit) are managed per project here."""

    list_display = ["key", "title"]
    search_fields = ["key", "title"]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["key", "title", "engine", "environment"]
    list_filter = ["engine", "environment"]
    search_fields = ["key", "title"]


@admin.register(Database)
class DatabaseAdmin(admin.ModelAdmin):
    list_display = ["name", "instance", "project"]
    list_filter = ["project", "instance__environment"]
    search_fields = ["name", "instance__key"]


@admin.register(Schema)
class SchemaAdmin(admin.ModelAdmin):
    list_display = ["name", "database"]
    search_fields = ["name", "database__name"]


@admin.register(Table)
class TableAdmin(admin.ModelAdmin):
    list_display = ["name", "schema"]
    search_fields = ["name"]


@admin.register(Column)
class ColumnAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "table",
        "data_type",
        "classification_level",
        "suggested_category",
        "semantic_type",
    ]
    list_filter = [
        "classification_level",
        "suggested_category",
        "table__schema__database__instance__environment",
    ]
    search_fields = ["name", "table__name"]
    raw_id_fields = ["table"]


@admin.register(SemanticType)
class SemanticTypeAdmin(admin.ModelAdmin):
    list_display = ["key", "title", "algorithm"]
    search_fields = ["key", "title"]
