"""gunicorn reads this from the working directory: the Procfile's ``gunicorn ... wsgi:app``.

The hooks stop gunicorn with one line when the web process cannot start, and keep the metrics of
exited workers tidy (service/web/serving.py). Everything else is on the Procfile's command line.
"""

from service.web.serving import child_exit, on_starting  # noqa: F401 - gunicorn looks these names up here
