"""Helpers shared by integration tests (import them; they are not fixtures)."""
