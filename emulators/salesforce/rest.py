"""The REST API's routing in the emulated org: which resource a ``/services/data/vXX.X/...`` request
names (checked against the contract's routes, methods and sObjects), the handler of each resource,
and composite requests, whose subrequests are routed the same way (``@{ref.field}`` references
resolved, ``allOrNone`` rolled back).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from emulators.salesforce import contract
from emulators.salesforce.common import Failed, fail
from emulators.salesforce.resources import OrgResources

#: what a REST request is answered with: status, JSON body (None: no body) and headers
Result = tuple[int, Any, dict[str, str]]


@dataclass(frozen=True)
class RestCall:
    """One REST request once the resource it names is known: what a resource handler reads."""

    route: str
    method: str
    #: ``vNN.0``
    version: str
    #: the URL template's variables (``sobject``, ``id``, ``field``, ``value``)
    variables: dict[str, str]
    args: dict[str, str]
    body: Any
    auto_assign: str | None
    #: an HTTP request (False: a composite subrequest)
    top: bool

    @property
    def sobject(self) -> str:
        """The sObject the URL names (routes under ``/sobjects/<X>`` and ``/tooling/sobjects/<X>``)."""
        return self.variables["sobject"]


class OrgRest(OrgResources):
    """The REST routing layer of the emulated org."""

    def _dispatch(self, method: str, path: str, args: dict[str, str], body: Any, *, auto_assign: str | None,
                  top: bool = False) -> tuple[int, Any, dict[str, str]]:
        """Run one REST request against the org's state (the HTTP route and composite subrequests)."""
        try:
            return self._route(method, path, args, body, auto_assign=auto_assign, top=top)
        except Failed as failed:
            return failed.status, failed.errors, failed.headers

    def _route(self, method: str, path: str, args: dict[str, str], body: Any, *, auto_assign: str | None,
               top: bool) -> tuple[int, Any, dict[str, str]]:
        parts = path.split("/", 4)  # '', services, data, vXX.X, rest
        version = parts[3] if len(parts) > 3 else ""
        if problem := contract.version_problem(version):
            self._violation(problem)
            raise Failed(problem.status, [problem.as_json()])
        rest = "/" + (parts[4] if len(parts) > 4 else "")
        matched = contract.match_route(rest, set(self.schema))
        if matched is None:
            self._violation(f"no such resource: {method} {path}")
            raise fail(404, "The requested resource does not exist", "NOT_FOUND")
        route, variables = matched
        if method not in contract.allowed_methods(route):
            self._violation(f"{method} is not allowed on {route}")
            raise fail(405, f"HTTP Method '{method}' not allowed. Allowed are "
                            f"{','.join(contract.allowed_methods(route))}", "METHOD_NOT_ALLOWED")
        sobject = variables.get("sobject")
        if sobject is not None and route != "tooling_create" and sobject not in self.schema:
            if route != "describe":  # describing an object is how a client learns whether the org has it
                self._violation(f"unknown sObject {sobject}")
            raise fail(404, f"The requested resource does not exist: sObject type '{sobject}' is not supported.",
                       "NOT_FOUND")
        call = RestCall(route, method, version, variables, args, body, auto_assign, top)
        return self._resources()[route](call)

    def _resources(self) -> dict[str, Callable[[RestCall], Result]]:
        """The handler of each route of :data:`emulators.salesforce.contract.ROUTES`."""
        return {"limits": self._limits_resource, "sobjects": self._sobjects_resource,
                "describe": self._describe_resource, "query": self._query_resource, "queryall": self._query_resource,
                "tooling_query": self._query_resource, "composite": self._composite_resource,
                "collections": self._collections_resource, "tooling_create": self._tooling_create_resource,
                "basic": self._basic_resource, "row": self._row_resource,
                "by_external_id": self._by_external_id_resource}

    def _limits_resource(self, call: RestCall) -> Result:
        return 200, {"DailyApiRequests": {"Max": self.daily_limit, "Remaining": self.daily_limit - self.used}}, {}

    def _sobjects_resource(self, call: RestCall) -> Result:
        return 200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
            self._basic(name, call.version) for name in self.schema]}, {}

    def _describe_resource(self, call: RestCall) -> Result:
        return 200, self._describe(call.sobject, call.version), {}

    def _query_resource(self, call: RestCall) -> Result:
        return 200, self._query(call.args.get("q", ""), call.version, tooling=call.route == "tooling_query"), {}

    def _composite_resource(self, call: RestCall) -> Result:
        if not call.top:
            raise fail(400, "A composite request cannot contain a composite request", "INVALID_FIELD")
        return self._composite(call.body, call.version, call.auto_assign)

    def _collections_resource(self, call: RestCall) -> Result:
        return self._collections_delete(call.args)

    def _tooling_create_resource(self, call: RestCall) -> Result:
        return self._tooling_create(call.sobject, call.body)

    def _basic_resource(self, call: RestCall) -> Result:
        sobject, version = call.sobject, call.version
        if call.method == "GET":
            return 200, {"objectDescribe": self._basic(sobject, version), "recentItems": []}, {}
        values = self._checked(sobject, call.body, creating=True)
        record = self._create(sobject, values, call.auto_assign)
        return 201, {"id": record["Id"], "success": True, "errors": []}, {
            "Location": f"/services/data/{version}/sobjects/{sobject}/{record['Id']}"}

    def _row_resource(self, call: RestCall) -> Result:
        row = self.objects[call.sobject].get(call.variables["id"])
        if row is None:
            raise fail(404, "The requested resource does not exist", "NOT_FOUND")
        return self._row(call.method, call.sobject, row, call.args, call.body, version=call.version,
                         auto_assign=call.auto_assign)

    def _by_external_id_resource(self, call: RestCall) -> Result:
        return self._by_external_id(call.method, call.sobject, call.variables["field"], unquote(call.variables["value"]),
                                    call.body, version=call.version, numeric=float(call.version[1:]),
                                    auto_assign=call.auto_assign)

    # -- composite -----------------------------------------------------------------------------
    def _composite(self, body: Any, version: str, auto_assign: str | None) -> tuple[int, Any, dict[str, str]]:
        problems = contract.composite_problems(body)
        if problems:
            for problem in problems:
                self._violation(problem)
            raise Failed(400, [p.as_json() for p in problems])
        all_or_none = bool(body.get("allOrNone", False))
        snapshot = copy.deepcopy(self.objects) if all_or_none else None
        mark = len(self._uncommitted)
        results: dict[str, Any] = {}
        responses: list[dict[str, Any]] = []
        failed = False
        for sub in body["compositeRequest"]:
            ref = sub["referenceId"]
            if failed and all_or_none:
                responses.append(_halted(ref, "The transaction was rolled back since another operation in the same "
                                              "transaction failed."))
                continue
            try:
                url = _resolve(sub["url"], results)
                sub_body = _resolve(sub.get("body"), results) if "body" in sub else None
            except KeyError as exc:
                responses.append(_halted(ref, f"Invalid reference specified. No value for {exc.args[0]} found in "
                                              f"{exc.args[0].split('.')[0]}. Provided referenceId ('"
                                              f"{exc.args[0].split('.')[0]}') must reference a valid subrequest or "
                                              "query result."))
                failed = True
                continue
            split = urlsplit(url)
            args = {k: v[0] for k, v in parse_qs(split.query).items()}
            status, payload, headers = self._dispatch(sub["method"], split.path, args, sub_body,
                                                      auto_assign=auto_assign)
            responses.append({"body": payload, "httpHeaders": headers, "httpStatusCode": status, "referenceId": ref})
            if status >= 400:
                failed = True
            else:
                results[ref] = payload
            if not all_or_none:  # each subrequest is a transaction of its own
                self._commit_changes(self.acting_user, origin=self.api_origin(version[1:]))
        if failed and snapshot is not None:
            self.objects = snapshot
            self._discard_changes(mark)
            for response in responses:
                if response["httpStatusCode"] < 400:
                    response.update(_halted(response["referenceId"], "The transaction was rolled back since another "
                                                                     "operation in the same transaction failed."))
        return 200, {"compositeResponse": responses}, {}



def _halted(ref: str, message: str) -> dict[str, Any]:
    """The answer of a subrequest that did not run (or was rolled back)."""
    return {"body": [{"errorCode": "PROCESSING_HALTED", "message": message}], "httpHeaders": {},
            "httpStatusCode": 400, "referenceId": ref}


def _resolve(value: Any, results: dict[str, Any]) -> Any:
    """Replace ``@{ref.path}`` references with earlier subrequests' results.

    Raises:
        KeyError: a reference names nothing (its text is the argument).
    """
    if isinstance(value, str):
        def one(found: re.Match[str]) -> str:
            text = found.group(0)[2:-1]
            current: Any = results.get(found.group(1))
            if current is None:
                raise KeyError(text)
            for step in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", found.group(2)):
                try:
                    current = current[step[0]] if step[0] else current[int(step[1])]
                except (KeyError, IndexError, TypeError):
                    raise KeyError(text) from None
            if current is None:
                raise KeyError(text)
            return str(current)

        return contract.REFERENCE.sub(one, value)
    if isinstance(value, dict):
        return {k: _resolve(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, results) for v in value]
    return value
