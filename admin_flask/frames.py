"""Websocket frames of the live feed's messages, built once for every client.

simple-websocket builds each message's frame per client (through wsproto, compressing it again for
each client that negotiated ``permessage-deflate``): with 50 clients, 50 encodings of the same text.
The feed builds a message's frame once (wsproto's ``FrameProtocol``, uncompressed, as a server
sends it: unmasked) and each client's thread writes the same bytes. An uncompressed message is
valid on a connection that negotiated compression (RFC 7692: compression is per message).
"""

from __future__ import annotations

from wsproto.frame_protocol import FrameProtocol


def text_frame(text: str) -> bytes:
    """The complete, unfragmented websocket text frame holding ``text``."""
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(text, fin=True))


def frame_header_size(frame: bytes) -> int:
    """How many bytes of ``frame`` come before its payload (2, 4 or 10: a server's frames are unmasked)."""
    length = frame[1] & 0x7F
    return 2 if length < 126 else 4 if length == 126 else 10
