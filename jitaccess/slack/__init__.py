"""Slack approvals: routing, messages, the interactivity endpoint, identity links. See docs/slack.md."""
