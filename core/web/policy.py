"""A page's Content-Security-Policy: only the inline script and style the page itself holds
(their SHA-256 hashes, taken from the HTML served), nothing from elsewhere, never framed."""

from __future__ import annotations

import base64
import functools
import hashlib
import re

from starlette.responses import HTMLResponse

INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)
"""The page's own inline blocks (ours carry no attributes; anything else is not allowed)."""


@functools.lru_cache(maxsize=16)
def content_security_policy(html: str, images: str = "'self'") -> str:
    """The policy for one page; pages are few and fixed, so each is hashed once. `images`: where
    its pictures may come from (the chat's replies show images from any https host)."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[tag].append(f"'sha256-{digest}'")
    script = " ".join(hashes["script"]) or "'none'"
    style = " ".join(hashes["style"]) or "'none'"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {script}",
            f"style-src {style}",
            "connect-src 'self'",  # the chat's POSTs and the costs page's API calls
            f"img-src {images}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def html_page(html: str, images: str = "'self'") -> HTMLResponse:
    policy = content_security_policy(html, images)
    return HTMLResponse(html, headers={"Content-Security-Policy": policy})
