"""The chat core: the visitor page, the `/chat` Socket.IO namespace and the single write path.

- service.py: the write path (start, post, edit, close, block, delete);
- writer.py: group commit of messages, with the listeners that write in the same transaction;
- fanout.py: rendered messages and list rows pushed to the sockets that show them;
- receipts.py: delivered and seen watermarks;
- queries.py: lookups, history pages, the operator's list and search;
- rooms.py: room names, which are also the presence keys;
- previews.py: a message on one line (the list's preview, media labels);
- namespace.py, views.py, handoff.py: the adapters (Socket.IO, HTTP, device hand-off).
"""
