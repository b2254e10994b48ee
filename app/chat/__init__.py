"""The chat core: the visitor page, the `/chat` Socket.IO namespace and the single write path."""
