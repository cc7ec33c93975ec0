"""Outbound webhooks to the rest of the product: the outbox (``outbox.emit`` and one function per event),
Standard Webhooks signing, guarded delivery over HTTP, and the endpoints operators register."""
