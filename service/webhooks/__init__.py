"""The Graph webhook receiver: handshake, parse/verify notifications, enqueue; rich-notification crypto."""
