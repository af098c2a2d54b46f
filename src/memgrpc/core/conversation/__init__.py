"""Conversations: users (explicit and implicit, with activity), sessions, their messages,
processing jobs, and the purge or rename of a user across every table."""
