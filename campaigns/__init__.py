"""Campaigns, templates and layouts, checks, approval, dispatch, deliveries and reports."""
