"""Slack's Web API as calsync uses it: OAuth v2 install, ``users.lookupByEmail``, ``conversations.open``,
``chat.postMessage`` (with Block Kit's limits), their errors (``token_revoked``, ``account_inactive``,
``users_not_found``, ``invalid_blocks``) and per-method, per-workspace rate limits (429 with Retry-After);
plus a control that plays a person pressing a button (a signed ``block_actions`` request)."""
