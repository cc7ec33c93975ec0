"""The Runtime that RQ entry points in this process use, installed explicitly by the process's worker.

``rq worker -w service.workers.worker.Worker`` builds it from the environment when it starts (so a bad
setting stops the worker at boot, not at its first job); ``calsync dev`` and the tests install theirs.
There is no fallback: a job run where none was installed fails with a message saying how to start it.
"""

from __future__ import annotations

from service.runtime import Runtime

_installed: Runtime | None = None


class NoRuntime(RuntimeError):
    """A calsync job ran in a process that did not install a Runtime."""


def install(runtime: Runtime | None) -> None:
    global _installed
    _installed = runtime


def current() -> Runtime:
    if _installed is None:
        raise NoRuntime("no calsync runtime in this process: run workers with "
                        "`rq worker -w service.workers.worker.Worker ...` (see the Procfile)")
    return _installed
