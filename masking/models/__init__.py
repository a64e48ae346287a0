from masking.models.catalog import (
    ClassificationLevel,
    Column,
    Database,
    Engine,
    Instance,
    Project,
    Schema,
    SemanticType,
    Table,
)

__all__ = [
    "ClassificationLevel",
    "Column",
    "Database",
    "Engine",
    "Instance",
    "Project",
    "Schema",
    "SemanticType",
    "Table",
]
