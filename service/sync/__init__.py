"""Delta sync of calendars into MongoDB: sync requests (coalesced in Redis), rounds, and the sweeps."""
