"""One narrow fix so the embedded store (mongomock 4.3) runs ``bulk_write(UpdateOne)`` on pymongo >= 4.11.

pymongo 4.11 added a ``sort`` argument that ``UpdateOne``/``ReplaceOne`` pass to the bulk builder, and
mongomock 4.3's builder does not accept it (mongomock issue #912), so every ``bulk_write`` of updates
fails. calsync never sorts a bulk update, so the shim accepts ``sort=None`` and refuses anything else.
Chosen over pinning pymongo below 4.11: production talks to real MongoDB with a current driver, and only
the embedded store (dev, demo, the mongomock test run) goes through this.
"""

from __future__ import annotations

import functools

from mongomock.collection import BulkOperationBuilder

_MARK = "_calsync_accepts_sort"


def _without_sort(method):
    @functools.wraps(method)
    def wrapper(self, *args, sort=None, **kwargs):
        if sort is not None:
            raise NotImplementedError("mongomock cannot sort a bulk update")
        return method(self, *args, **kwargs)

    setattr(wrapper, _MARK, True)
    return wrapper


def install() -> None:
    """Patch mongomock's bulk builder once per process (idempotent)."""
    for name in ("add_update", "add_replace"):
        method = getattr(BulkOperationBuilder, name)
        if not getattr(method, _MARK, False):
            setattr(BulkOperationBuilder, name, _without_sort(method))
