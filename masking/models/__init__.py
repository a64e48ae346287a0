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
from masking.models.versions import (
    ChangeState,
    PolicyChange,
    PolicyHead,
    PolicyVersion,
    ProjectPolicySettings,
    UnclassifiedAction,
)

__all__ = [
    "ChangeState",
    "ClassificationLevel",
    "Column",
    "Database",
    "DecisionEpoch",
    "Engine",
    "Exemption",
    "ExemptionKind",
    "Instance",
    "MaskingRule",
    "PolicyChange",
    "PolicyHead",
    "PolicyVersion",
    "Project",
    "ProjectPolicySettings",
    "Schema",
    "SemanticType",
    "Table",
    "UnclassifiedAction",
]
