"""Fewer messages per turn: a turn's plain text replies joined into the reply that follows them.

The bot engine thinks in small replies (a greeting, a note such as "I did not catch that", the next
question), but each one the relay sends is an outbound API call and one more notification on the
patient's phone. Within one turn, a plain text reply (no options, no template, no request for the
phone number or a location, no list button) followed by a reply that is not a template becomes one
message: the two texts joined by a blank line, carrying the second reply's options and flags. This
repeats, so a greeting, a note and a question can leave as one message.

A joined text is only kept when the message that carries it holds it whole, as the channel renders
it (:mod:`connector.channels.whatsapp`, :mod:`connector.channels.telegram`): a WhatsApp text body
holds 4096 characters, the body of its reply buttons, list or form 1024, numbered options 4096 with the
numbered lines; a Telegram message 4096. Anything longer stays as separate messages, exactly as the
engine wrote them. A template reply is never joined with anything: outside WhatsApp's 24-hour window
it is sent as its approved template, which could not carry another reply's text.
"""

from __future__ import annotations

from connector.channels import telegram, whatsapp
from connector.channels.base import render_numbered
from core.models import Channel, Reply

#: what separates two joined replies: a blank line, so each still reads as its own paragraph
SEPARATOR = "\n\n"
#: the longest WhatsApp text body (its interactive body is :data:`connector.channels.whatsapp.MAX_BODY`)
WHATSAPP_MAX_TEXT = 4096


def coalesce(channel: Channel, replies: list[Reply]) -> list[Reply]:
    """``replies`` with every run of plain text replies joined into the reply that follows them,
    as far as one message of ``channel`` holds the joined text (the replies themselves are not changed).

    Args:
        channel: the channel the replies go out on; its limits decide what fits.
        replies: one turn's replies, in order.

    Returns:
        The replies to send, in order: as many as ``replies`` or fewer.
    """
    merged: list[Reply] = []
    for reply in replies:
        if merged and _joinable(merged[-1], reply):
            joined = reply.model_copy(update={"text": merged[-1].text + SEPARATOR + reply.text})
            if fits(channel, joined):
                merged[-1] = joined
                continue
        merged.append(reply)
    return merged


def is_plain(reply: Reply) -> bool:
    """Whether ``reply`` is only text: nothing the patient taps, no template, no request for data."""
    return not (reply.options or reply.template or reply.request_phone or reply.request_location
                or reply.list_button or reply.form)


def _joinable(first: Reply, second: Reply) -> bool:
    # the first gives up its own form (only text may), the second keeps its form (a template could not)
    return is_plain(first) and not second.template


def fits(channel: Channel, reply: Reply) -> bool:
    """Whether one message of ``channel`` carries the whole text of ``reply``, as the channel renders it."""
    if channel == "telegram":
        return len(reply.text) <= telegram.MAX_TEXT
    if reply.form is not None:  # a form's message is interactive: its body is as short as the buttons'
        return len(reply.text) <= whatsapp.MAX_BODY
    if not reply.options:
        return len(reply.text) <= WHATSAPP_MAX_TEXT
    if _whatsapp_interactive(reply):
        return len(reply.text) <= whatsapp.MAX_BODY
    # options that fit neither buttons nor a list are written as numbered lines under the text
    return len(render_numbered(reply.text, [o.title for o in reply.options])) <= WHATSAPP_MAX_TEXT


def _whatsapp_interactive(reply: Reply) -> bool:
    """Whether WhatsApp sends ``reply``'s options as reply buttons or a list (the same choice as
    :func:`connector.channels.whatsapp.render`), whose body is shorter than a text message's."""
    titles = [len(o.title) for o in reply.options]
    as_buttons = len(titles) <= whatsapp.MAX_BUTTONS and max(titles) <= whatsapp.MAX_BUTTON_TITLE
    as_list = len(titles) <= whatsapp.MAX_ROWS and max(titles) <= whatsapp.MAX_ROW_TITLE
    return as_buttons or as_list
