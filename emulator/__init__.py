"""A local Microsoft Graph and identity platform served over HTTPS on loopback, for tests and the demo."""
