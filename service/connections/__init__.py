"""A user's connection: connect, disconnect, delete everything we hold, a deleted account, the reconnect
mail (``lifecycle``), and the streamed export of what we hold (``export``)."""
