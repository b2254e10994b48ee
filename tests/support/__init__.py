"""Test support: a real server process, real clients, and a connection-cutting TCP proxy."""
