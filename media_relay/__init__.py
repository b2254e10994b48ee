"""The aiortc media relay and echo peer (calls arrive in a later issue).

It takes an SDP offer and gives an answer, owns its peer connections, and imports nothing
from `app/`.
"""
