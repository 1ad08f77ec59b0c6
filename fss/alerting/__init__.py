"""Sending alerts to their targets over the network (HTTP, SMTP); no database here."""
