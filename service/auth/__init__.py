"""Connecting calendars: MSAL sign-in, admin consent, encrypted token caches and reconnects."""
