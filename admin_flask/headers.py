"""The security headers on every response of the admin (API, websocket handshake, pages, login).

Nothing the admin serves may be cached (it is private data), sniffed into another type, framed by
another site, or run a script that is not one of the admin's own files: the Content-Security-Policy
allows no inline script or style and no other origin (``connect-src 'self'`` covers the same
origin's websocket).
"""

from __future__ import annotations

from flask import Response

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}


def add_security_headers(response: Response) -> Response:
    """``after_request`` hook: set every header of ``SECURITY_HEADERS`` (replacing what was there)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response
