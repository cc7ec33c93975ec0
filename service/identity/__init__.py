"""The identity platform: MSAL apps, encrypted token caches, access tokens and id-token checks."""
