"""Where messages go: email (the default), a Teams chat with calsync's bot, a Slack DM.

``deliver(rt, user, kind, message)`` sends one message on each channel the person chose for its kind, once
per channel (a claim per message and channel, as the digest's for email); a channel that fails for good falls
back to email and the person is told once; one that fails for now makes the caller's job retry.
"""

from service.channels.dispatch import Outgoing, deliver, sent_channels

__all__ = ["Outgoing", "deliver", "sent_channels"]
