"""SOQL queries run against the emulated org (``GET /query``, ``/queryAll``, ``/tooling/query``): the
parsed query (:mod:`emulators.salesforce.soql`) is checked against the sObjects' fields and child
relationships, then filtered and nested as Salesforce answers it."""

from __future__ import annotations

from typing import Any

from emulators.salesforce import contract
from emulators.salesforce.common import fail, same_value
from emulators.salesforce.package import OrgPackage
from emulators.salesforce.schema import CHILD_RELATIONSHIPS, SField, relationship_name
from emulators.salesforce.soql import Query, SoqlError


class OrgQueries(OrgPackage):
    """The SOQL layer of the emulated org."""

    def _query(self, text: str, version: str, *, tooling: bool = False) -> dict[str, Any]:
        try:
            query = contract.parse_soql(text)
        except SoqlError as exc:
            self._violation(f"MALFORMED_QUERY: {exc}")
            raise fail(400, f"{text[:120]}\n^\nERROR at Row:1:Column:1\n{exc}", exc.code) from None
        if tooling:
            if query.sobject != "CustomField":
                raise fail(400, f"sObject type '{query.sobject}' is not supported.", "INVALID_TYPE")
            rows = [{"attributes": {"type": "CustomField"}, "Id": cid, "FullName": name}
                    for name, cid in self.custom_fields.items()]
            return {"size": len(rows), "totalSize": len(rows), "done": True, "records": rows,
                    "entityTypeName": "CustomField"}
        if query.sobject not in self.schema:
            self._violation(f"INVALID_TYPE: {query.sobject}")
            raise fail(400, f"sObject type '{query.sobject}' is not supported.", "INVALID_TYPE")
        records = self._run(query, list(self.objects[query.sobject].values()), version, depth=0)
        return {"totalSize": len(records), "done": True, "records": records}

    def _run(self, query: Query, rows: list[dict[str, Any]], version: str, depth: int) -> list[dict[str, Any]]:
        sobject = query.sobject
        fields = self.schema[sobject]
        parents = self._parent_fields(sobject, [f for f in query.fields if "." in f])
        own = [f for f in query.fields if "." not in f]
        for name in own + _where_fields(query.where):
            if name not in fields:
                self._violation(f"INVALID_FIELD: {sobject}.{name}")
                raise fail(400, f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a "
                                "custom field, be sure to append the '__c' after the custom field name.",
                           "INVALID_FIELD")
        for name in own + _where_fields(query.where):
            if fields[name].type == "textarea" and name in _where_fields(query.where):
                raise fail(400, f"field '{name}' can not be filtered in a query call", "INVALID_FIELD")
        out = []
        for row in rows:
            if query.where is not None and not _test(query.where, row, fields):
                continue
            item = self._public(sobject, row, own, version)
            for relationship, (lookup, names) in parents.items():
                item[relationship] = self._parent(row.get(lookup), names, version)
            for sub in query.subqueries:
                relation = CHILD_RELATIONSHIPS.get(sobject, {}).get(sub.sobject)
                if relation is None or depth >= 4:
                    self._violation(f"INVALID_TYPE: relationship {sub.sobject} of {sobject}")
                    raise fail(400, f"Didn't understand relationship '{sub.sobject}' in FROM part of query call. "
                                    "If you are attempting to use a custom relationship, be sure to append the '__r' "
                                    "after the custom relationship name.", "INVALID_TYPE")
                child, lookup = relation
                children = [c for c in self.objects[child].values() if c.get(lookup) == row["Id"]]
                nested = self._run(contract.Query(sub.fields, sub.subqueries, child, sub.where, sub.limit),
                                   children, version, depth + 1)
                item[sub.sobject] = {"totalSize": len(nested), "done": True, "records": nested} if nested else None
            out.append(item)
            if query.limit is not None and len(out) >= query.limit:
                break
        return out


    def _parent_fields(self, sobject: str, dotted: list[str]) -> dict[str, tuple[str, list[str]]]:
        """The parent fields a query selects (``ContentDocument.Title``), by relationship: the lookup field it
        follows and the parent's fields. An unknown relationship or field is refused as Salesforce does."""
        lookups = {relationship_name(name): name for name, spec in self.schema[sobject].items()
                   if spec.type == "reference"}
        out: dict[str, tuple[str, list[str]]] = {}
        for path in dotted:
            relationship, _, name = path.partition(".")
            lookup = lookups.get(relationship)
            targets = self.schema[sobject][lookup].reference_to if lookup else []
            if lookup is None or "." in name or (len(targets) == 1 and name not in self.schema[targets[0]]):
                self._violation(f"INVALID_FIELD: {sobject}.{path}")
                raise fail(400, f"Didn't understand relationship '{relationship}' in field path. If you are "
                                "attempting to use a custom relationship, be sure to append the '__r' after the "
                                "custom relationship name.", "INVALID_FIELD")
            out.setdefault(relationship, (lookup, []))[1].append(name)
        return out

    def _parent(self, parent_id: Any, names: list[str], version: str) -> dict[str, Any] | None:
        """A parent record as a query row nests it (None: the lookup is empty)."""
        parent_object = self._object_of(str(parent_id)) if parent_id else None
        if parent_object is None:
            return None
        return self._public(parent_object, self.objects[parent_object][str(parent_id)], names, version)


def _where_fields(node: Any) -> list[str]:
    """The fields a ``WHERE`` condition names."""
    if node is None:
        return []
    if node[0] == "cmp":
        return [node[1]]
    return [name for term in node[1] for name in _where_fields(term)]


def _test(node: Any, row: dict[str, Any], fields: dict[str, SField]) -> bool:
    """Whether a record meets a ``WHERE`` condition."""
    if node[0] == "or":
        return any(_test(t, row, fields) for t in node[1])
    if node[0] == "and":
        return all(_test(t, row, fields) for t in node[1])
    _, name, op, value = node
    stored = row.get(name)
    if isinstance(value, bool) or value is None:
        equal = (stored in (None, "")) if value is None else bool(stored) is value
    else:
        equal = same_value(stored, value, fields[name].case_sensitive or fields[name].type in ("id", "reference"))
    return equal if op == "=" else not equal
