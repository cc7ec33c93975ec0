"""Graph subscriptions: create, renew, reauthorize, recreate, delete; the renewal sweep."""
