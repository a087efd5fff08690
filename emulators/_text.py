"""A CRM note's HTML as an agent reads it in the CRM's own view (what the emulators' agent view shows)."""

from __future__ import annotations

import html
import re

_COMMENTS = re.compile(r"<!--.*?-->", re.S)
_TAGS = re.compile(r"<[^>]+>")


def plain_text(body: str) -> str:
    """Links as "text: address", list items as bullets, one paragraph or line break a line, hidden comments
    (the relay's idempotency marker) dropped, and entities shown as the characters they stand for."""
    body = _COMMENTS.sub("", body)
    body = re.sub(r'<a [^>]*href="([^"]+)"[^>]*>(.*?)</a>', r"\2: \1", body)  # an agent sees where a link goes
    text = re.sub(r"<li>", "• ", body)
    text = re.sub(r"</(p|li)>|<br\s*/?>", "\n", text)
    return html.unescape(re.sub(r"\n\s*\n+", "\n", _TAGS.sub("", text))).strip()
