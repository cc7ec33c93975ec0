"""Connecting a whole organisation at once: the tenant's directory, who is enrolled, the scope checker, personal
opt-out, switching between per-user and tenant-wide, and disconnecting the tenant (``enrolment.py``)."""
