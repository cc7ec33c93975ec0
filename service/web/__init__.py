"""HTTP plumbing every page and route uses: CSRF, security headers and request logs, the request-body
guard, health checks, and gunicorn's boot checks."""
