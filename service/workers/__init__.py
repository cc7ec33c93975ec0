"""The RQ adapter: the entry points jobs name (``jobs.py``), the worker class, the scheduler, and the
in-process worker of embedded mode."""
