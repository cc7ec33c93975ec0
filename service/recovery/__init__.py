"""Losing a store and losing nothing: an emptied Redis (detected, then rebuilt from MongoDB) and a MongoDB
restored from an older backup (``calsync recover``)."""
