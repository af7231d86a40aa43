"""Serving tools: the local TF Serving stand-in, clients, and the serve / predict / promote commands."""
