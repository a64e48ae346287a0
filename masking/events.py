"""The audit event types `masking` writes, with the words the log shows for them."""

from __future__ import annotations

EVENT_TYPES: dict[str, str] = {
    "project.created": "Project added",
    "project.updated": "Project changed",
    # Catalog and policy
    "catalog.upserted": "Catalog updated",
    "catalog.classification_changed": "Column classification changed",
    "catalog.discoveries_throttled": "Column discovery throttled",
    "semantic_type.created": "Semantic type created",
    "semantic_type.updated": "Semantic type changed",
    "semantic_type.deleted": "Semantic type deleted",
    "rule.created": "Masking rule created",
    "rule.updated": "Masking rule changed",
    "rule.deleted": "Masking rule deleted",
    "rule.reordered": "Masking rules reordered",
    "role.created": "Role created",
    "role.updated": "Role changed",
    "role.deleted": "Role deleted",
    "exemption.created": "Exemption created",
    "exemption.updated": "Exemption changed",
    "exemption.revoked": "Exemption revoked",
    "exemption.expired": "Exemption expired",
    "exemption.deleted": "Exemption deleted",
    "project.policy_settings_updated": "Project policy settings changed",
    "policy.version_created": "Policy version saved",
    "policy_change.submitted": "Policy change submitted for approval",
    "policy_change.applied": "Policy change approved and applied",
    "policy_change.rejected": "Policy change rejected",
    "policy_change.withdrawn": "Policy change withdrawn",
    "policy_change.superseded": "Policy change superseded",
    # Grants (`masking.models.Grant`; jitaccess's requests make them)
    "grant.created": "Grant created",
    "grant.revoked": "Grant revoked",
    "grant.expired": "Grant expired",
    # The data path's inference guard
    "query.refused": "Query refused by the inference guard",
    "query.guard_audited": "Query ran past the inference guard (audit mode)",
}
