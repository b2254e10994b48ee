"""The audit trail: who did what to which conversation, visitor or account, when and from where.

`trail` writes entries (the one entry point, `record`), `origin` says who is acting (the one
place that turns a session or a Telegram user into an actor), `search` and `export` read them
back for the owner's page and its CSV. Nothing in the app edits or deletes an entry.
"""
