"""An emulator of the Telegram Bot API and of the users who write to the bot.

Bot side: ``POST /bot<token>/<method>``. Every call is checked against the Bot API description
(``api.json``): unknown methods get Telegram's 404, missing or mistyped parameters its 400
``Bad Request`` with the reason, and the call is recorded as a violation. ``getMe``,
``sendMessage``, ``answerCallbackQuery``, ``setWebhook`` and ``getWebhookInfo`` keep state and
answer with the real ``{"ok": true, "result": …}`` shapes; 429 carries ``parameters.retry_after``.
Files (:mod:`emulators._telegram_files`): ``getFile`` and the download link
``/file/bot<token>/<file_path>``; ``sendPhoto``, ``sendDocument``, ``sendAudio``, ``sendVoice`` and
``sendVideo`` by file id, by URL (fetched, as Telegram does) or uploaded (multipart/form-data), with a
caption, refused in Telegram's words where its docs say so.

User side: :meth:`TelegramEmulator.user` posts updates to the relay with the secret token header,
each first checked against the Bot API's ``Update`` (an update Telegram would never send is recorded as
a violation). Photos, documents, voice notes and stickers carry real bytes, stored for ``getFile``. A user
can edit a message they sent (``edited_message``: the same ``message_id`` and ``date``, with
``edit_date``), share their own contact or someone else's, and block the bot (``my_chat_member``, new status
``kicked``): from then on every send to their chat gets Telegram's ``403 Forbidden: bot was blocked by the
user``, until they start it again (``member``, then ``/start``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import requests
from flask import Flask, Response, jsonify, request

from emulators._checks import telegram_call_errors, telegram_update_errors
from emulators._fault_queue import FaultQueue
from emulators._samples import sample_jpeg
from emulators._telegram_files import FILE_METHODS, BadRequest, FileStore, get_file, send_file
from emulators._whatsapp_patient import SAMPLE_WEBP as _SAMPLE_WEBP


@dataclass
class TelegramEmulator(FaultQueue):
    """State and behaviour of the emulated Bot API.

    Args:
        token: the bot's token (``<bot id>:<secret>``).
        secret_token: sent by the emulated users in ``X-Telegram-Bot-Api-Secret-Token``.
        relay_url: where updates go (``…/webhooks/telegram``).
    """

    token: str
    secret_token: str
    relay_url: str = ""
    username: str = "chat2crm_demo_bot"
    timeout_seconds: float = 20.0
    sent: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    answered_callbacks: list[str] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    webhook: dict[str, Any] = field(default_factory=dict)
    faults: list[list[Any]] = field(default_factory=list)
    inbound: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    #: the chats whose user blocked the bot
    blocked: set[int] = field(default_factory=set)
    calls: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.message_ids = itertools.count(1000)
        self.update_ids = itertools.count(800_000_000)
        self.bot_id = int(self.token.split(":", 1)[0])
        self.files = FileStore()
        self.app = self._make_app()

    def messages_to(self, chat_id: int | str) -> list[dict[str, Any]]:
        """The messages the bot sent to one chat, in order."""
        with self.lock:
            return list(self.sent.get(int(chat_id), []))

    @staticmethod
    def _fail(code: int, description: str, **parameters: Any) -> tuple[Response, int]:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return jsonify(body), code

    def _bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Clinic", "username": self.username}

    def _make_app(self) -> Flask:
        app = Flask("telegram-emulator")

        @app.route("/bot<path:token>/<method>", methods=["GET", "POST"])
        def call(token: str, method: str) -> tuple[Response, int]:
            self.calls += 1
            fault = self._take_fault()
            if fault == "timeout":
                time.sleep(self.timeout_seconds)
            if fault == "500":
                return self._fail(500, "Internal Server Error")
            if fault == "429":
                return self._fail(429, "Too Many Requests: retry after 3", retry_after=3)
            if token != self.token:
                return self._fail(401, "Unauthorized")
            params = request.get_json(silent=True) if request.is_json else request.values.to_dict()
            uploads = {} if request.is_json else request.files.to_dict()
            checked = {**(params or {}), **{name: f"attach://{name}" for name in uploads}}
            problems = telegram_call_errors(method, checked if params is not None else {})
            if problems is None:
                return self._fail(404, "Not Found")
            if problems:
                with self.lock:
                    self.violations.append({"method": method, "params": params, "problems": problems})
                return self._fail(400, f"Bad Request: {problems[0]}")
            chat = (params or {}).get("chat_id")
            if (method == "sendMessage" or method in FILE_METHODS) and str(chat).lstrip("-").isdigit() and (
                    int(str(chat)) in self.blocked):
                return self._fail(403, "Forbidden: bot was blocked by the user")
            try:
                if method in FILE_METHODS:
                    return jsonify({"ok": True, "result": self._send_file(method, params or {}, uploads)}), 200
                return jsonify({"ok": True, "result": self._perform(method, params or {})}), 200
            except BadRequest as exc:
                if exc.violation:
                    with self.lock:
                        self.violations.append({"method": method, "params": params, "problems": [str(exc)]})
                return self._fail(400, f"Bad Request: {exc}")

        @app.get("/file/bot<token>/<path:file_path>")
        def download(token: str, file_path: str) -> Response | tuple[Response, int]:
            self.calls += 1
            stored = self.files.at(file_path) if token == self.token else None
            if stored is None:
                return self._fail(404, "Not Found")
            return Response(stored.content, mimetype="application/octet-stream")

        @app.get("/_emulator/messages")
        def list_messages() -> Response:
            return jsonify(self.messages_to(request.args.get("chat_id", "0")))

        @app.get("/_emulator/inbound")
        def list_inbound() -> Response:
            with self.lock:
                return jsonify(list(self.inbound.get(int(request.args.get("from", "0") or 0), [])))

        @app.post("/_emulator/users/<int:user_id>/send")
        def user_send(user_id: int) -> tuple[Response, int]:
            data = request.get_json(silent=True) or {}
            user = self.user(user_id, data.get("name") or "Demo Patient", data.get("language_code"))
            if data.get("callback"):
                status = user.press(data["callback"]["data"], int(data["callback"].get("message_id") or 0))
            else:
                status = user.send_text(str(data.get("text", "")))
            return jsonify({"relay_status": status}), 200

        return app

    def _message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        return {"message_id": next(self.message_ids), "from": self._bot_user(),
                "chat": {"id": chat_id, "type": "private"}, "date": int(time.time()), **content}

    def _send_file(self, method: str, params: dict[str, Any], uploads: dict[str, Any]) -> dict[str, Any]:
        field = FILE_METHODS[method]
        content, stored = send_file(self.files, method, params, uploads.get(field))
        message = self._message(int(params["chat_id"]), **content)
        source = params.get(field) if field not in uploads else "upload"
        with self.lock:
            self.sent[int(params["chat_id"])].append({**message, "_sent_at": time.time(), "_method": method,
                                                       "_source": source, "_file_id": stored.file_id})
        return message

    def _perform(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return self._bot_user()
        if method == "getFile":
            return get_file(self.files, params)
        if method == "sendMessage":
            chat_id = int(params["chat_id"])
            message = self._message(chat_id, text=params["text"])
            notes: dict[str, Any] = {"_sent_at": time.time()}
            if "inline_keyboard" in (params.get("reply_markup") or {}):
                message["reply_markup"] = params["reply_markup"]
            elif params.get("reply_markup"):
                # a Message holds only an inline keyboard; a reply keyboard lives on the user's screen
                notes["_reply_markup"] = params["reply_markup"]
            with self.lock:
                self.sent[chat_id].append({**message, **notes})
            return message
        if method == "answerCallbackQuery":
            with self.lock:
                self.answered_callbacks.append(params["callback_query_id"])
            return True
        if method == "setWebhook":
            self.webhook = {"url": params["url"], "secret_token": params.get("secret_token")}
            return True
        if method == "getWebhookInfo":
            return {"url": self.webhook.get("url", ""), "has_custom_certificate": False, "pending_update_count": 0}
        return True

    def user(self, user_id: int, name: str = "Patient", language_code: str | None = None,
             username: str | None = None) -> TelegramUser:
        """A user who writes to the bot in a private chat."""
        return TelegramUser(self, user_id, name, language_code, username)


class TelegramUser:
    """Posts updates to the relay as Telegram would for one user."""

    def __init__(self, emulator: TelegramEmulator, user_id: int, name: str, language_code: str | None,
                 username: str | None) -> None:
        self.emulator, self.user_id, self.name = emulator, user_id, name
        self.language_code, self.username = language_code, username
        self.last_update: dict[str, Any] | None = None
        #: the file id of the last file this user sent
        self.last_file_id: str | None = None
        #: the last text message this user sent (what :meth:`edit` changes by default)
        self.last_message: dict[str, Any] | None = None

    def _from(self) -> dict[str, Any]:
        first, _, last = self.name.partition(" ")
        user: dict[str, Any] = {"id": self.user_id, "is_bot": False, "first_name": first}
        if last:
            user["last_name"] = last
        if self.language_code:
            user["language_code"] = self.language_code
        if self.username:
            user["username"] = self.username
        return user

    def message(self, **content: Any) -> dict[str, Any]:
        """A new ``Message`` from this user in their private chat with the bot."""
        message = {"message_id": next(self.emulator.message_ids), "from": self._from(),
                   "chat": {"id": self.user_id, "type": "private", "first_name": self._from()["first_name"]},
                   "date": int(time.time()), **content}
        if "text" in content:
            self.last_message = message
        return message

    def post(self, update: dict[str, Any], *, secret: str | None = None) -> int:
        """POST an update to the relay with the secret token (or ``secret``); returns the HTTP status.

        The update is first checked against the Bot API's ``Update``: one Telegram would never send is
        recorded in ``violations`` (and still posted: the relay must cope).
        """
        self.last_update = update
        problems = telegram_update_errors(update)
        with self.emulator.lock:
            if problems:
                self.emulator.violations.append({"update": update, "problems": problems})
            self.emulator.inbound[self.user_id].append({**update, "_received_at": time.time()})
        header = self.emulator.secret_token if secret is None else secret
        headers = {"X-Telegram-Bot-Api-Secret-Token": header} if header else {}
        return requests.post(self.emulator.relay_url, json=update, headers=headers, timeout=10).status_code

    def update(self, **fields: Any) -> dict[str, Any]:
        return {"update_id": next(self.emulator.update_ids), **fields}

    def send_text(self, text: str) -> int:
        return self.post(self.update(message=self.message(text=text)))

    def start(self, payload: str | None = None) -> int:
        return self.send_text("/start" + (f" {payload}" if payload else ""))

    def press(self, data: str, message_id: int = 0) -> int:
        """Press an inline button whose ``callback_data`` is ``data`` on a message the bot sent."""
        sent = self.emulator.messages_to(self.user_id)
        carrier = next((m for m in reversed(sent) if message_id in (0, m["message_id"]) and m.get("reply_markup")),
                       sent[-1] if sent else self.message(text="?"))
        carrier = {k: v for k, v in carrier.items() if not k.startswith("_")}  # the emulator's own notes stay here
        return self.post(self.update(callback_query={
            "id": str(next(self.emulator.update_ids)), "from": self._from(), "message": carrier,
            "chat_instance": str(self.user_id), "data": data}))

    def share_contact(self, phone: str, *, first_name: str | None = None, user_id: int | None = 0) -> int:
        """Share a contact: by default their own (the phone button's card: their ``user_id``); another person's
        with ``first_name`` and that person's ``user_id`` (None: someone not on Telegram)."""
        contact: dict[str, Any] = {"phone_number": phone, "first_name": first_name or self._from()["first_name"]}
        owner = self.user_id if user_id == 0 else user_id
        if owner is not None:
            contact["user_id"] = owner
        return self.post(self.update(message=self.message(contact=contact)))

    def send_sticker(self, *, emoji: str = "\N{THUMBS UP SIGN}", content: bytes | None = None) -> int:
        """Send a (static, WebP) sticker; its file id is ``last_file_id``."""
        stored = self.emulator.files.add(content if content is not None else _SAMPLE_WEBP, "image/webp", "sticker")
        self.last_file_id = stored.file_id
        sticker = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "type": "regular",
                   "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": emoji,
                   "file_size": len(stored.content)}
        return self.post(self.update(message=self.message(sticker=sticker)))

    def share_location(self, latitude: float, longitude: float) -> int:
        return self.post(self.update(message=self.message(location={"latitude": latitude, "longitude": longitude})))

    def _caption(self, caption: str | None) -> dict[str, Any]:
        return {"caption": caption} if caption else {}

    def send_photo(self, caption: str | None = None, *, content: bytes | None = None) -> int:
        """Send a photo (``content``, or a small JPEG) in two sizes, the largest last; its id is ``last_file_id``."""
        files = self.emulator.files
        large = files.add(content if content is not None else sample_jpeg(), "image/jpeg", "photo")
        small = files.add(large.content[:1024], "image/jpeg", "photo")
        self.last_file_id = large.file_id
        photo = [small.as_object(width=90, height=90), large.as_object(width=1280, height=960)]
        return self.post(self.update(message=self.message(photo=photo, **self._caption(caption))))

    def send_document(self, content: bytes, file_name: str, *, mime_type: str = "application/pdf",
                      caption: str | None = None) -> int:
        """Send a file as a document."""
        stored = self.emulator.files.add(content, mime_type, "document", file_name)
        self.last_file_id = stored.file_id
        return self.post(self.update(message=self.message(document=stored.as_object(), **self._caption(caption))))

    def send_voice(self, content: bytes, *, duration: int = 3, mime_type: str = "audio/ogg") -> int:
        """Send a voice note recorded in Telegram."""
        stored = self.emulator.files.add(content, mime_type, "voice")
        self.last_file_id = stored.file_id
        return self.post(self.update(message=self.message(voice=stored.as_object(duration=duration))))

    def send_media(self, kind: str, content: bytes, mime_type: str, *, file_name: str | None = None,
                   caption: str | None = None, **fields: Any) -> int:
        """Send an ``audio``, ``video`` or ``video_note`` (``fields``: its duration, width, height, length)."""
        stored = self.emulator.files.add(content, mime_type, kind, file_name)
        self.last_file_id = stored.file_id
        return self.post(self.update(message=self.message(**{kind: stored.as_object(**fields)},
                                                          **self._caption(caption))))

    def _membership(self, old: dict[str, Any], new: dict[str, Any]) -> int:
        user = self._from()
        return self.post(self.update(my_chat_member={
            "chat": {"id": self.user_id, "type": "private", "first_name": user["first_name"]}, "from": user,
            "date": int(time.time()), "old_chat_member": old, "new_chat_member": new}))

    def block(self) -> int:
        """Block the bot: Telegram tells the bot its membership of the private chat changed (``my_chat_member``,
        ``kicked``), and refuses to deliver its messages from then on."""
        bot = self.emulator._bot_user()
        with self.emulator.lock:
            self.emulator.blocked.add(self.user_id)
        return self._membership({"status": "member", "user": bot}, {"status": "kicked", "user": bot, "until_date": 0})

    def unblock(self) -> int:
        """Unblock the bot (``my_chat_member``: ``kicked`` → ``member``); pressing Start then sends ``/start``."""
        bot = self.emulator._bot_user()
        with self.emulator.lock:
            self.emulator.blocked.discard(self.user_id)
        return self._membership({"status": "kicked", "user": bot, "until_date": 0}, {"status": "member", "user": bot})

    def edit(self, text: str, message: dict[str, Any] | None = None) -> int:
        """Edit a text message this user sent (the last text by default): Telegram sends it again, same
        ``message_id`` and ``date``, with the new text and ``edit_date``."""
        original = message or self.last_message
        if original is None:
            raise ValueError("nothing was sent yet")
        edited = {**original, "text": text, "edit_date": max(int(time.time()), int(original["date"]) + 1)}
        return self.post(self.update(edited_message=edited))


def create_app(**kwargs: Any) -> Flask:
    """A WSGI app of a fresh emulator; the emulator is ``app.config['EMULATOR']``."""
    emulator = TelegramEmulator(**kwargs)
    emulator.app.config["EMULATOR"] = emulator
    return emulator.app
