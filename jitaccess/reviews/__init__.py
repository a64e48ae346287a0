"""Access reviews: each project's standing unmask access recertified on a schedule.

What is reviewed (`population`): every member of a live standing exemption of the project (people,
IdP groups, roles, service accounts), and every member of a role that such an exemption or the
project's break-glass settings name. A campaign (`services.campaign_open`) snapshots them as items
and gives each to one reviewer: the project's approvers and policy administrators
(`selectors.reviewers_of`), never someone whose own access the item is. Access with no unmask
decision recorded for `unused_days` is proposed for removal.

Reviewers answer Keep or Remove on the web (`views`) or in a Slack DM (`slack_messages`,
`slack_interactions`); `services.review_item_answer` locks the item, checks it is the person's to
answer, and removes through masking's own services (`exemption_update`/`exemption_revoke`,
`role_save`), so a removal is a policy version with its before/after event like any other. At the
deadline (`services.campaign_deadline_pass`, from the beat sweep in `tasks`) what nobody answered
is removed or escalated to the project's policy administrators, as the project chose. Every step
is an `access_review.*` audit event; `audit.reports.access_reviews` rebuilds the outcome from
them for the CSV export and the PDF summary.
"""
