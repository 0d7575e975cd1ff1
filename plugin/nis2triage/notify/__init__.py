"""Notifications to the authority: payloads, pseudonyms, the outbox and its channels."""
