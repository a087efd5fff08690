"""People's edits of the records the relay wrote, from Pipedrive's webhooks v2: ``crm setup`` creates one
``change`` webhook per mapped object (the person, and the lead or deal) calling the relay's route
(:data:`EDITS_PATH`) with HTTP Basic credentials the relay derives from its own secret (:func:`credentials`),
and the route reads each notification as a :class:`~core.inbox.FieldsEdited` (:class:`EditReceiver`).

- **Which fields.** A ``change`` notification carries ``data`` (the object now) and ``previous`` (only the fields
  the change changed, as they were); custom fields are under ``custom_fields`` by their 40-character keys. The
  fields whose values differ are named back as the mapping names them: a custom field by its visible name (the
  adapter's cached field keys: a lead's are the deal fields), ``phones`` and ``emails`` as ``phone`` and
  ``email``, any other standard field by its key.
- **Whose edit.** ``meta.change_source`` is ``app`` for a change made in Pipedrive's web app, ``api`` for one made
  through the API (the relay's own writes, with its API token or the app's OAuth token, and every other
  integration's): only ``app`` is a person's edit. An ``api`` change by the relay's own user (``meta.user_id``, the
  token's user, read once a day: :data:`RELAY_USER`) is the relay's own write and is not read at all; one by another
  user is another integration's (``by_person`` False, ``source`` its user).
- **Stages.** A deal's ``stage_id`` and a lead's ``label_ids`` (the lead's status is a label) travel with their
  new values (``values``), with the stage's name (``stage_name``) and the labels' names (``label_names``) from the
  adapter's cached pipelines and labels: the stage changes conversions are sent for. ``event_id`` is ``meta.id``.
- **Once.** Pipedrive retries a notification the relay did not answer 2xx (after 3, 30 and 150 seconds); the
  event's id (``meta.id``) is remembered for a day (:data:`EVENTS`), so a retry of one already taken changes
  nothing.

Calls: none per notification once the field keys, pipelines, labels and the relay's user are cached (read again
daily: 1 call each); ``crm setup``: 1 list, and 1 create per missing webhook (10 tokens each).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from core.errors import FatalError, WebhookRejectedError
from core.inbox import FieldsEdited
from core.keys import family

if TYPE_CHECKING:
    from redis import Redis

    from adapters.pipedrive.adapter import PipedriveAdapter

#: the relay's route the webhooks call
EDITS_PATH = "/crm/pipedrive/edits"
#: the Basic authentication user name the webhooks are created with
AUTH_USER = "chat2crm"
#: the objects a webhook can watch, by the mapping's object names (leads share the deal fields)
ENTITIES: dict[str, Literal["person", "deal"]] = {"person": "person", "deal": "deal", "lead": "deal"}
#: standard fields whose key in a notification differs from the field's key in the mapping
ALIASES = {"phones": "phone", "emails": "email"}
#: fields every change touches: no person edited them
_SYSTEM = frozenset({"update_time", "custom_fields", "next_activity_id", "last_activity_id"})
#: a notification already taken (its event id), so Pipedrive's retry of it changes nothing
EVENTS = family("pipedrive", "edit-event:{event}", ttl=86400, holds_pii=False, owner=__name__)
#: the user id of the relay's token (``GET /v1/users/me``): its ``api`` changes are the relay's own writes
RELAY_USER = family("pipedrive", "edit-user", ttl=86400, holds_pii=False, owner=__name__)
#: the stage fields whose new values the notifications carry, by object
STAGE_FIELDS = {"deal": "stage_id", "lead": "label_ids"}


def credentials(secret: str) -> tuple[str, str]:
    """The Basic authentication the webhooks call the relay with: derived from the relay's secret (nothing more
    to configure, and a new secret gives new credentials: ``crm setup`` then makes the webhooks again)."""
    digest = hmac.new(secret.encode(), b"chat2crm.pipedrive-webhooks.v1", hashlib.sha256).hexdigest()
    return AUTH_USER, digest[:40]


class EditWebhooks:
    """``crm setup`` and ``crm doctor`` of the change webhooks.

    Args:
        adapter: the Pipedrive adapter (its session: the API token, or the app's token with the ``admin`` scope).
        objects: the mapping's objects whose edits are read (``person``, ``lead`` or ``deal``).
        url: the relay's route, as Pipedrive calls it (``PUBLIC_BASE_URL`` + :data:`EDITS_PATH`).
        secret: the relay's secret the credentials are derived from.
    """

    def __init__(self, adapter: PipedriveAdapter, *, objects: list[str], url: str, secret: str) -> None:
        self.adapter = adapter
        self.objects = [o for o in dict.fromkeys(objects) if o in ENTITIES]
        self.url = url
        self.user, self.password = credentials(secret)

    def _ours(self) -> dict[str, list[dict[str, Any]]]:
        """The account's webhooks calling the relay's route, by object."""
        listed = self.adapter._call("webhooks_list", "GET", "/v1/webhooks")
        found: dict[str, list[dict[str, Any]]] = {}
        for hook in listed.get("data") or []:
            if isinstance(hook, dict) and hook.get("subscription_url") == self.url:
                found.setdefault(str(hook.get("event_object")), []).append(hook)
        return found

    def _current(self, hook: dict[str, Any]) -> bool:
        """Whether a webhook is the one the relay wants (v2, changes, its credentials: a password Pipedrive shows
        back is compared; one it masks is taken as right)."""
        password = hook.get("http_auth_password")
        return (str(hook.get("version")) == "2.0" and hook.get("event_action") in ("change", "*")
                and hook.get("http_auth_user") == self.user and hook.get("is_active", 1) in (1, True)
                and (not password or set(str(password)) == {"*"} or password == self.password))

    def setup(self, *, apply: bool) -> list[str]:
        """Create the missing webhooks (and make again one with other credentials); one line each."""
        lines: list[str] = []
        try:
            found = self._ours()
        except FatalError as exc:
            return [f"MISSING the webhooks cannot be listed ({exc.message}): the token needs the admin scope "
                    "(an app: add it in the Developer Hub)"]
        for obj in self.objects:
            hooks = found.get(obj, [])
            if any(self._current(h) for h in hooks):
                lines.append(f"ok webhook v2: change.{obj} → {self.url}")
                continue
            if not apply:
                lines.append(f"would create webhook v2: change.{obj} → {self.url}")
                continue
            for stale in hooks:  # other credentials (a new secret): made again
                self.adapter._call("webhook_delete", "DELETE", f"/v1/webhooks/{stale['id']}")
            self.adapter._call("webhook_create", "POST", "/v1/webhooks", body={
                "subscription_url": self.url, "event_action": "change", "event_object": obj, "version": "2.0",
                "name": f"chat2crm: {obj} edited", "http_auth_user": self.user, "http_auth_password": self.password})
            lines.append(f"created webhook v2: change.{obj} → {self.url}")
        return lines

    def check(self) -> list[str]:
        """``crm doctor``: one line per object (MISSING when its webhook is not there)."""
        try:
            found = self._ours()
        except FatalError as exc:
            return [f"edits: TO DO the webhooks cannot be listed: {exc.message}"]
        return [f"edits: ok webhook change.{obj} calls {self.url}" if any(self._current(h) for h in found.get(obj, []))
                else f"edits: TO DO webhook change.{obj} → {self.url}: run `chat2crm crm setup`" for obj in self.objects]


class EditReceiver:
    """Reads the change webhooks' notifications (see the module).

    Args:
        adapter: the Pipedrive adapter (its cached field keys).
        secret: the relay's secret the credentials are derived from.
        redis: where taken events are remembered.
    """

    def __init__(self, adapter: PipedriveAdapter, *, secret: str, redis: Redis) -> None:
        self.adapter = adapter
        self.user, self.password = credentials(secret)
        self.redis = redis

    def authenticate(self, headers: Mapping[str, str]) -> None:
        """Check the Basic authentication (in constant time).

        Raises:
            WebhookRejectedError: 401, missing or wrong.
        """
        scheme, _, encoded = str(headers.get("Authorization") or "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user, password = "", ""
        good_user = hmac.compare_digest(user.encode(), self.user.encode())
        good_password = hmac.compare_digest(password.encode(), self.password.encode())
        if scheme.lower() != "basic" or not (good_user and good_password):
            raise WebhookRejectedError(401, "pipedrive: the webhook's Basic authentication is missing or wrong")

    def read(self, headers: Mapping[str, str], body: bytes) -> tuple[str, FieldsEdited] | None:
        """The event id and the edit a notification carries (None: not a change of a watched object, or no field
        changed).

        Raises:
            WebhookRejectedError: 401 (authentication), 400 (not a webhooks v2 notification).
            core.errors.RetryableError, core.errors.AuthError: the field keys could not be read.
        """
        self.authenticate(headers)
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise WebhookRejectedError(400, "pipedrive: the body is not JSON") from None
        meta = payload.get("meta") if isinstance(payload, dict) else None
        if not isinstance(meta, dict) or not meta.get("id") or not meta.get("entity_id"):
            raise WebhookRejectedError(400, "pipedrive: not a webhooks v2 notification (no meta, id or entity_id)")
        entity = str(meta.get("entity") or "")
        if meta.get("action") != "change" or entity not in ENTITIES:
            return None
        data, previous = payload.get("data") or {}, payload.get("previous") or {}
        if not isinstance(data, dict) or not isinstance(previous, dict):
            raise WebhookRejectedError(400, "pipedrive: data and previous must be objects")
        names = self._names(ENTITIES[entity], changed(data, previous))
        if not names:
            return None
        source = str(meta.get("change_source") or "")
        if source == "api" and str(meta.get("user_id") or "") == self.relay_user():
            return None  # the relay's own write
        edit = FieldsEdited(crm_object=entity, crm_id=str(meta["entity_id"]), fields=names, by_person=source == "app",
                            source=f"userId:{meta['user_id']}" if meta.get("user_id") else source or None,
                            at=_moment(meta.get("timestamp")), values=self._stage_values(entity, names, data),
                            event_id=str(meta["id"]))
        return str(meta["id"]), edit

    def relay_user(self) -> str:
        """The user id of the relay's token (cached a day; one ``GET /v1/users/me`` when not).

        Raises:
            core.errors.RetryableError, core.errors.AuthError, core.errors.FatalError: it could not be read.
        """
        key = RELAY_USER.key()
        cached = self.redis.get(key)
        if cached:
            return cached.decode() if isinstance(cached, bytes) else str(cached)
        me = self.adapter._call("me", "GET", "/v1/users/me")
        user = str((me.get("data") or {}).get("id") or "")
        if user:
            self.redis.set(key, user, ex=RELAY_USER.seconds(None) or 86400)
        return user

    def _stage_values(self, entity: str, names: list[str], data: dict[str, Any]) -> dict[str, Any]:
        """The new stage of a deal (``stage_id``, ``stage_name``) or labels of a lead (``label_ids``,
        ``label_names``), when the change changed them; else nothing."""
        field = STAGE_FIELDS.get(entity)
        if field is None or field not in names:
            return {}
        value = data.get(field)
        if entity == "deal":
            return {field: value, "stage_name": self._stage_name(data.get("pipeline_id"), value)}
        ids = [str(v) for v in value] if isinstance(value, list) else []
        return {field: ids, "label_names": self._label_names(ids)}

    def _stage_name(self, pipeline: Any, stage: Any) -> str | None:
        """A stage's name, from the adapter's pipelines (read again once for a stage made since)."""
        for refresh in (False, True):
            entry = self.adapter._pipelines(refresh=refresh).get(str(pipeline))
            names = [k for k, v in ((entry or {}).get("stages") or {}).items() if str(v) == str(stage) and k != str(v)]
            if names:
                return names[0]
        return None

    def _label_names(self, ids: list[str]) -> list[str]:
        """Lead labels' names, from the adapter's labels (read again once for a label made since)."""
        for refresh in (False, True):
            by_id = {v: k for k, v in self.adapter._labels(refresh=refresh).items()}
            if all(i in by_id for i in ids):
                break
        return [by_id[i] for i in ids if i in by_id]

    def _names(self, entity: Literal["person", "deal"], keys: list[str]) -> list[str]:
        """Notification keys → the fields' names as the mapping names them."""
        specs: dict[str, dict[str, Any]] = {}
        if any(len(k) == 40 for k in keys):
            specs = self.adapter._fields(entity)
            if any(len(k) == 40 and k not in specs for k in keys):
                specs = self.adapter._fields(entity, refresh=True)  # a field made since the keys were read
        out = []
        for key in keys:
            spec = specs.get(key) if len(key) == 40 else None
            out.append(str(spec["name"]) if spec else ALIASES.get(key, key))
        return list(dict.fromkeys(out))

    def first(self, event: str) -> bool:
        """Remember an event as taken; False when it was already (a retry, a second delivery)."""
        return bool(self.redis.set(EVENTS.key(event), 1, nx=True, ex=EVENTS.seconds(None) or 86400))

    def forget(self, event: str) -> None:
        """Forget an event whose taking failed (Pipedrive's retry takes it)."""
        self.redis.delete(EVENTS.key(event))


def changed(data: dict[str, Any], previous: dict[str, Any]) -> list[str]:
    """The keys of the fields a change changed: those in ``previous`` whose value differs from ``data``'s (custom
    fields by their keys, whether under ``custom_fields`` or at the top level as v1 leads carry them)."""
    out = [k for k, v in previous.items() if k not in _SYSTEM and data.get(k) != v]
    now, before = data.get("custom_fields") or {}, previous.get("custom_fields") or {}
    if isinstance(now, dict) and isinstance(before, dict):
        out += [k for k, v in before.items() if now.get(k) != v]
    return list(dict.fromkeys(out))


def _moment(value: Any) -> datetime | None:
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=UTC)
    return None
