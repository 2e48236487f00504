"""Imports of recipient files: reading, checking, staging and applying them."""
