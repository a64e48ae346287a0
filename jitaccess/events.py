"""The audit event types `jitaccess` writes: the words the audit log shows for each, and the words
a request's timeline shows for the events it lists (said from the request's point of view)."""

from __future__ import annotations

EVENT_TYPES: dict[str, str] = {
    "approval_policy.created": "Approval policy created",
    "approval_policy.updated": "Approval policy changed",
    "approval_policy.deleted": "Approval policy deleted",
    "approval_policy.reordered": "Approval policies reordered",
    "project.access_settings_updated": "Request and break-glass settings changed",
    # Access requests
    "request.created": "Access requested",
    "request.approval_recorded": "Approval recorded",
    "request.stage_completed": "Approval stage completed",
    "request.approved": "Request approved",
    "request.denied": "Request denied",
    "request.cancelled": "Request cancelled",
    "request.revoked": "Access revoked",
    "request.relinquished": "Access given up early",
    "request.expired": "Access expired",
    "request.timed_out": "Request timed out",
    "breakglass.taken": "Break-glass access taken",
    "breakglass.reviewed": "Break-glass use reviewed",
    # Slack
    "slack.user_linked": "Slack account linked",
    "slack.user_unlinked": "Slack account unlinked",
    "slack.route_changed": "Slack approval channel changed",
    "slack.forged_request": "Forged Slack request refused",
    "slack.action.refused": "Slack action refused",
    # Access reviews (jitaccess/reviews/)
    "access_review.settings_changed": "Access review settings changed",
    "access_review.campaign_opened": "Access review opened",
    "access_review.item_kept": "Access kept in review",
    "access_review.item_removed": "Access removed in review",
    "access_review.items_escalated": "Unanswered review items escalated",
    "access_review.campaign_closed": "Access review closed",
    "access_review.answer_refused": "Access review answer refused",
}

# A request's timeline on its page.
TIMELINE_LABELS: dict[str, str] = {
    "request.created": "Requested",
    "request.approval_recorded": "Approval recorded",
    "request.stage_completed": "Stage complete",
    "request.approved": "Approved",
    "request.denied": "Denied",
    "request.cancelled": "Cancelled",
    "request.revoked": "Revoked",
    "request.relinquished": "Relinquished",
    "request.timed_out": "Timed out",
    "grant.created": "Grant created",
    "grant.expired": "Expiry processed (access had ended at the grant's expiry)",
    "grant.revoked": "Grant revoked",
    "breakglass.taken": "Break-glass taken",
    "breakglass.reviewed": "Break-glass reviewed",
}
# Break-glass grants written before `_approve` stopped recording them as approvals still carry a
# `request.approved` event: nobody approved them, so it is not shown as an approval.
BREAKGLASS_TIMELINE_LABELS = {**TIMELINE_LABELS, "request.approved": "Access opened under break-glass"}
