"""Operator views: subscription health, users needing re-consent, queue health, metrics, and actions."""
