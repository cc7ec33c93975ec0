"""Sign-in pages: connect a calendar (MSAL auth-code flow with PKCE), admin consent, the user's connection
page. The token caches they fill live in ``service/identity``."""
