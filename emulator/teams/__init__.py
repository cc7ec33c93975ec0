"""Microsoft Teams as calsync's bot meets it: Graph's per-user app installation (``teamwork/installedApps``
and the 1:1 chat it creates) and the Bot Connector (``/v3/conversations/{id}/activities``), plus a control
that plays a person pressing a card's button (an ``invoke`` activity signed like the Bot Framework's)."""
