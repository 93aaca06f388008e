#!/usr/bin/env python3
"""Validates OCSF events (JSON lines on stdin) against the OCSF schema's own definitions.

The schema is the definitions file shipped in PyPI's `pydantic-ocsf` (`ocsf/schemas/v1_4_0.json`,
found without importing the package). Each event's class is looked up by `class_uid`; its
attributes are those of the class and every class it `extends`, a child's settings over its
parent's. Checked, recursively through objects: every `required` attribute is present, no
attribute is unknown, each value has its dictionary type (string, integer, long, float, boolean,
timestamp, object, array), enum values are among the class's or the dictionary's, the
`at_least_one` and `just_one` constraints hold, and `type_uid` is `class_uid * 100 +
activity_id`. Attributes a class takes from profiles (`$include`) are not in the definitions
file and count as unknown: an event here uses none.

Prints one line per problem (`line N: path: what`) and exits 1 if there is any, 2 if the schema
cannot be found.
"""

import importlib.util
import json
import os
import sys

VERSION = "v1_4_0"


def schema_path():
    spec = importlib.util.find_spec("ocsf")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        path = os.path.join(base, "schemas", f"{VERSION}.json")
        if os.path.exists(path):
            return path
    return None


class Schema:
    def __init__(self, raw):
        self.raw = raw
        self.dictionary = raw["dictionary"]["attributes"]
        self.types = raw["dictionary"]["types"]["attributes"]
        self.categories = {
            name: c["uid"] for name, c in raw["categories_meta"]["attributes"].items()
        }
        self.classes = {}
        for name in raw["events"]:
            resolved = self.resolve("events", name)
            category = resolved.get("category")
            if category in self.categories and "uid" in resolved:
                uid = self.categories[category] * 1000 + resolved["uid"]
                self.classes[uid] = (name, resolved)

    def resolve(self, kind, name):
        """A class or object with everything it inherits: a child's settings win."""
        node = self.raw[kind][name]
        parent = node.get("extends")
        if parent and parent in self.raw[kind]:
            base = self.resolve(kind, parent)
        else:
            base = {"attributes": {}}
        attributes = {k: dict(v) for k, v in base["attributes"].items()}
        for attr, settings in node.get("attributes", {}).items():
            if attr == "$include":
                continue
            merged = attributes.get(attr, {})
            for key, value in settings.items():
                if key == "enum":
                    merged["enum"] = {**merged.get("enum", {}), **value}
                else:
                    merged[key] = value
            attributes[attr] = merged
        out = {k: v for k, v in base.items() if k != "attributes"}
        for key, value in node.items():
            if key not in ("attributes", "extends"):
                out[key] = value
        # constraints are the child's own when it states them
        if "constraints" in node:
            out["constraints"] = node["constraints"]
        out["attributes"] = attributes
        return out

    def primitive(self, type_name):
        seen = set()
        while type_name in self.types and type_name not in seen:
            seen.add(type_name)
            parent = self.types[type_name].get("type")
            if not parent or parent == type_name:
                break
            type_name = parent
        return type_name


def check_scalar(schema, type_name, value):
    base = schema.primitive(type_name)
    if base == "json_t":
        return None
    if base == "string_t":
        return None if isinstance(value, str) else f"is not a string ({type_name})"
    if base == "boolean_t":
        return None if isinstance(value, bool) else f"is not a boolean ({type_name})"
    if base in ("integer_t", "long_t"):
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and base == "integer_t" and not -(2**31) <= value < 2**31:
            return f"is beyond a 32-bit integer ({type_name})"
        return None if ok else f"is not an integer ({type_name})"
    if base == "float_t":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"is not a number ({type_name})"
    return f"has a type the validator does not know ({type_name} as {base})"


def check_object(schema, definition, value, path, problems):
    if not isinstance(value, dict):
        problems.append(f"{path}: is not an object")
        return
    attributes = definition["attributes"]
    for attr, settings in attributes.items():
        if settings.get("requirement") == "required" and attr not in value:
            problems.append(f"{path}.{attr}: is required")
    for attr, item in value.items():
        where = f"{path}.{attr}" if path else attr
        if attr not in attributes:
            problems.append(f"{where}: is not an attribute of `{definition.get('name')}`")
            continue
        entry = schema.dictionary.get(attr, {})
        type_name = attributes[attr].get("type", entry.get("type"))
        is_array = attributes[attr].get("is_array", entry.get("is_array", False))
        items = item if is_array else [item]
        if is_array and not isinstance(item, list):
            problems.append(f"{where}: is not an array")
            continue
        # a class adds to the dictionary's values (`status_id` 3 to 6 beside 0, 1, 2, 99);
        # the uids of a class are checked below, not against the base event's `0`
        enum = None
        if "enum" in attributes[attr] or "enum" in entry:
            enum = {**entry.get("enum", {}), **attributes[attr].get("enum", {})}
        if attr in ("class_uid", "category_uid", "type_uid") and not path:
            enum = None
        for n, one in enumerate(items):
            at = f"{where}[{n}]" if is_array else where
            if type_name and type_name.endswith("_t"):
                problem = check_scalar(schema, type_name, one)
                if problem:
                    problems.append(f"{at}: {problem}")
                elif enum is not None and str(one) not in enum:
                    problems.append(f"{at}: {one!r} is not one of {sorted(enum, key=int)}")
            elif type_name == "object":
                if not isinstance(one, dict):
                    problems.append(f"{at}: is not an object")
            elif type_name in schema.raw["objects"]:
                check_object(schema, schema.resolve("objects", type_name), one, at, problems)
            else:
                problems.append(f"{at}: has an unknown type `{type_name}`")
    constraints = definition.get("constraints", {})
    for names in [constraints.get("at_least_one")] if constraints.get("at_least_one") else []:
        if not any(n in value for n in names):
            problems.append(f"{path or '(event)'}: needs at least one of {names} (constraint)")
    for names in [constraints.get("just_one")] if constraints.get("just_one") else []:
        if sum(n in value for n in names) != 1:
            problems.append(f"{path or '(event)'}: needs exactly one of {names} (constraint)")


def check_event(schema, event):
    problems = []
    uid = event.get("class_uid")
    if uid not in schema.classes:
        return [f"class_uid: {uid!r} is not a class of OCSF {VERSION}"]
    name, definition = schema.classes[uid]
    check_object(schema, dict(definition, name=name), event, "", problems)
    activity = event.get("activity_id")
    if isinstance(activity, int) and event.get("type_uid") != uid * 100 + activity:
        problems.append(f"type_uid: {event.get('type_uid')} is not {uid} * 100 + {activity}")
    category = schema.categories.get(definition.get("category"))
    if event.get("category_uid") != category:
        problems.append(f"category_uid: {event.get('category_uid')} is not {category}")
    return problems


def main():
    path = schema_path()
    if path is None:
        print("the OCSF schema is not installed: pip install pydantic-ocsf", file=sys.stderr)
        return 2
    with open(path) as f:
        schema = Schema(json.load(f))
    failed = 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        for problem in check_event(schema, json.loads(line)):
            print(f"line {n}: {problem}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
