"""Outbound webhooks to the rest of the product: Standard Webhooks signing, guarded delivery over HTTP,
and the endpoints operators register. Events are recorded by ``service/outbox.py``."""
