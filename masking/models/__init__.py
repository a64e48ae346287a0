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
from masking.models.policy import DecisionEpoch, Exemption, ExemptionKind, MaskingRule

__all__ = [
    "ClassificationLevel",
    "Column",
    "Database",
    "DecisionEpoch",
    "Engine",
    "Exemption",
    "ExemptionKind",
    "Instance",
    "MaskingRule",
    "Project",
    "Schema",
    "SemanticType",
    "Table",
]
