"""Hooks: thin wrappers around the external systems the suite talks to."""
