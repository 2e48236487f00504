"""Campaigns, templates and layouts, checks, approval, sending, deliveries and reports."""
