"""calsync: keeps Microsoft 365 calendars in sync through Graph change notifications.

Where to start: ``service/app.py`` builds the web app, ``service/webhooks/fast.py`` takes Graph's
notifications, ``service/workers/jobs.py`` holds every RQ entry point, ``service/sync/runner.py`` syncs one
user, and ``service/cli/main.py`` is the ``calsync`` command. docs/design.md lists the layers.
"""
