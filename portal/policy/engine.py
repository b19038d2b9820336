"""Load the Cedar schema and policies once, validate them, and decide requests.

Start-up refuses an invalid policy: a syntax error, a policy without an `@id`, a duplicate id or
a schema violation each raise PolicyError naming the file and line. Decisions allow only
`Decision.Allow` with no evaluation errors: Cedar skips a policy whose condition errors, so an
error anywhere in a decision is treated as a reason to deny.
"""
from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cedarpy

# Parsed entity graphs kept per process, by the facts they were built from, up to this many
# entities in all (a parsed entity takes 3 to 4 KB: some 8 MB per worker at most); the oldest
# parsed go first.
ENTITY_CACHE_ENTITIES = 2048
# Decisions kept per process by the shape of principal and resource (entities.Shaper), for this
# many shapes (each holds at most one Decision per action: some 3 MB per worker at most); the
# oldest go first. Shapes are few: kinds, roles and relationships, not users or referrals.
DECISION_CACHE_SHAPES = 4096
# `action "x" in [...]` in the schema: action groups, which per-action slices do not model.
_ACTION_GROUP_RE = re.compile(r'action\s+"[^"]+"\s+in\b')


class PolicyError(Exception):
    """The policies cannot be loaded; the message names the file and line."""


@dataclass(frozen=True)
class PolicySource:
    policy_id: str
    path: Path
    line: int
    effect: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    action: str
    policy_ids: tuple[str, ...]
    errors: tuple[str, ...]


def split_statements(text: str) -> list[tuple[int, str]]:
    """Split Cedar source into (first line, statement) pairs at top-level semicolons.

    Strings and `//` comments are skipped so that a `;` inside them does not split.
    """
    statements, start, line, start_line = [], 0, 1, None
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end == -1 else end
            continue
        elif c == '"':
            if start_line is None:
                start_line = line
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                elif text[i] == "\n":
                    line += 1
                i += 1
        elif c == ";":
            statements.append((start_line or line, text[start:i + 1]))
            start, start_line = i + 1, None
        elif not c.isspace() and start_line is None:
            start_line = line
        i += 1
    if start_line is not None:  # trailing text without its semicolon
        statements.append((start_line, text[start:]))
    return statements


class PolicyEngine:
    """The parsed schema and policy set; one per process, shared by every request."""

    def __init__(self, policy_dir: Path):
        self.policy_dir = Path(policy_dir)
        schema_path = self.policy_dir / "schema.cedarschema"
        try:
            self.schema_text = schema_path.read_text()
            self.schema = cedarpy.Schema.from_str(self.schema_text)
        except FileNotFoundError:
            raise PolicyError(f"{schema_path}: schema file missing") from None
        except ValueError as exc:
            raise PolicyError(f"{schema_path.name}: {exc}") from None
        self.sources = self._load_sources()
        self._validate()
        bodies = {source.policy_id: self._json_policy(source) for source in self.sources.values()}
        self.policy_set = _policy_set(bodies)
        self.slices = self._slices(bodies)
        self.classes = self._classes(bodies) if self.slices else {}
        self._action_uids: dict[str, dict] = {}
        self.named_types = set().union(*(_named_types(body) for body in bodies.values()))
        self._entity_cache: OrderedDict[tuple, tuple[cedarpy.Entities, int]] = OrderedDict()
        self._cached_entities = 0
        self._entity_lock = threading.Lock()
        self._decisions: dict[tuple, dict[str, Decision]] = {}
        self._decision_lock = threading.Lock()
        self.transparency = None  # filled on first use by portal.home.transparency

    # -- loading ---------------------------------------------------------------------------
    def _load_sources(self) -> dict[str, PolicySource]:
        sources: dict[str, PolicySource] = {}
        paths = sorted(self.policy_dir.glob("*.cedar"))
        if not paths:
            raise PolicyError(f"{self.policy_dir}: no .cedar policy files")
        for path in paths:
            for line, statement in split_statements(path.read_text()):
                try:
                    parsed = json.loads(cedarpy.policies_to_json_str(statement))["staticPolicies"]
                except ValueError as exc:
                    raise PolicyError(f"{path.name}:{line}: {exc}") from None
                if len(parsed) != 1:
                    raise PolicyError(f"{path.name}:{line}: expected exactly one policy")
                (body,) = parsed.values()
                policy_id = body.get("annotations", {}).get("id")
                if not policy_id:
                    raise PolicyError(f"{path.name}:{line}: policy has no @id(\"…\") annotation")
                if policy_id in sources:
                    raise PolicyError(f"{path.name}:{line}: duplicate policy id {policy_id!r} "
                                      f"(first at {sources[policy_id].where})")
                sources[policy_id] = PolicySource(policy_id, path, line, body["effect"], statement.strip())
        return sources

    def _json_policy(self, source: PolicySource) -> dict:
        (body,) = json.loads(cedarpy.policies_to_json_str(source.text))["staticPolicies"].values()
        return body

    def _slices(self, bodies: dict[str, dict]) -> dict[str, cedarpy.PolicySet]:
        """Per action, only the policies whose scope can name it: the same decisions, evaluated
        over a handful of policies instead of all of them (Cedar tests the scope first, so a
        policy left out could neither match nor error). Off when the schema has action groups."""
        if _ACTION_GROUP_RE.search(self.schema_text):
            return {}
        actions = set(re.findall(r'action\s+"([^"]+)"', self.schema_text))
        return {action: _policy_set({pid: body for pid, body in bodies.items() if _names_action(body, action)})
                for action in actions}

    def _classes(self, bodies: dict[str, dict]) -> dict[str, str]:
        """Per action, the action decided in its place: actions whose slices hold the same
        policies, that apply to the same principal and resource types, and that no policy in
        the slice reads as `action` in a condition, get the same decision on the same request
        (the scope of each policy matches both or neither). `accept`, `decline`, `hold` …
        are one evaluation instead of seven. Only with slices (no action groups)."""
        applies = {name: " ".join(body.split())
                   for name, body in re.findall(r'action\s+"([^"]+)"\s+appliesTo\s*\{([^{}]*)\}', self.schema_text)}
        classes, first = {}, {}
        for action in sorted(self.slices):
            members = frozenset(pid for pid, body in bodies.items() if _names_action(body, action))
            if action not in applies or any(_reads_action(bodies[pid].get("conditions", [])) for pid in members):
                classes[action] = action
                continue
            classes[action] = first.setdefault((members, applies[action]), action)
        return classes

    def _validate(self) -> None:
        ordered = list(self.sources.values())
        result = cedarpy.validate_policies("\n".join(s.text for s in ordered), self.schema)
        if not result.validation_passed:
            first = result.errors[0]
            # validate_policies numbers policies by position: policy0, policy1, ...
            index = int(first.policy_id.removeprefix("policy"))
            source = ordered[index]
            raise PolicyError(f"{source.where}: {source.policy_id}: {first.error}")

    # -- deciding --------------------------------------------------------------------------
    def entities(self, entity_list: list[dict]) -> cedarpy.Entities:
        """Build entities against the schema (a mistyped attribute fails here, not silently)."""
        return cedarpy.Entities.from_json_str(json.dumps(entity_list), schema=self.schema)

    def entities_for(self, key: tuple, build) -> cedarpy.Entities:
        """The parsed entities of `build()`, kept by `key`, which must determine them entirely
        (portal.policy.entities: the facts of the rows). Parsing is most of a decision's cost,
        and one request decides on the same user and resource several times."""
        cached = self._entity_cache.get(key)  # one dict lookup: safe without the lock
        if cached is not None:
            return cached[0]
        entity_list = build()
        parsed = self.entities(entity_list)
        with self._entity_lock:
            if key not in self._entity_cache:  # another thread may have parsed it meanwhile
                self._entity_cache[key] = (parsed, len(entity_list))
                self._cached_entities += len(entity_list)
            while self._cached_entities > ENTITY_CACHE_ENTITIES:
                _, (_, size) = self._entity_cache.popitem(last=False)
                self._cached_entities -= size
        return parsed

    def forget(self) -> None:
        """Drop every parsed graph and remembered decision (benchmarks: the first request of a shape)."""
        with self._entity_lock, self._decision_lock:
            self._entity_cache.clear()
            self._cached_entities = 0
            self._decisions.clear()

    def remembered(self, form: tuple) -> dict[str, Decision]:
        """The decisions made before on requests of this shape (entities.Shaper), by action.
        Only decisions without errors are kept (an error message names real ids)."""
        return self._decisions.get(form) or {}

    def remember(self, form: tuple, decisions) -> None:
        clean = [d for d in decisions if not d.errors]
        if not clean:
            return
        with self._decision_lock:
            kept = self._decisions.get(form)
            if kept is None:
                kept = self._decisions[form] = {}
                while len(self._decisions) > DECISION_CACHE_SHAPES:
                    del self._decisions[next(iter(self._decisions))]
            for decision in clean:
                kept.setdefault(decision.action, decision)

    def decide(self, principal: dict, action: str, resource: dict, entities) -> Decision:
        return self.decide_many(principal, [(action, resource)], entities)[0]

    def decide_many(self, principal: dict, requests: list[tuple[str, dict]], entities) -> list[Decision]:
        """Decisions in request order. Each distinct (action class, resource) is evaluated once,
        in one Cedar batch per class over that class's slice; an evaluation that reports an error
        is repeated for every action it stood for, so each carries its own errors."""
        classes = self.classes
        slots: dict[tuple, int] = {}  # (class, resource type, resource id) -> index in `evaluate`
        evaluate: list[tuple[str, dict]] = []
        slot_of = []
        for action, resource in requests:
            key = (classes.get(action, action), resource["type"], resource["id"])
            slot = slots.get(key)
            if slot is None:
                slot = slots[key] = len(evaluate)
                evaluate.append((key[0], resource))
            slot_of.append(slot)
        results = self._evaluate(principal, evaluate, entities)
        decisions = []
        for (action, resource), slot in zip(requests, slot_of):
            allowed, policy_ids, errors = results[slot]
            if errors and evaluate[slot][0] != action:
                allowed, policy_ids, errors = self._evaluate(principal, [(action, resource)], entities)[0]
            decisions.append(Decision(allowed, action, policy_ids, errors))
        return decisions

    def _evaluate(self, principal: dict, requests: list[tuple[str, dict]], entities) -> list[tuple]:
        """(allowed, policy ids, errors) per request: one Cedar batch per action, over its slice."""
        by_action: dict[str, list[int]] = {}
        for index, (action, _) in enumerate(requests):
            by_action.setdefault(action, []).append(index)
        out: list[tuple | None] = [None] * len(requests)
        for action, indexes in by_action.items():
            action_uid = self._action_uids.get(action) or self._action_uids.setdefault(
                action, {"type": "Action", "id": action})
            batch = [{"principal": principal, "action": action_uid, "resource": requests[i][1]} for i in indexes]
            policies = self.slices.get(action, self.policy_set)
            for i, result in zip(indexes, cedarpy.is_authorized_batch(batch, policies, entities, self.schema)):
                diagnostics = result.diagnostics
                errors = tuple(map(str, diagnostics.errors))
                out[i] = (result.allowed and not errors, tuple(diagnostics.reasons), errors)
        return out

def _policy_set(bodies: dict[str, dict]) -> cedarpy.PolicySet:
    return cedarpy.PolicySet.from_json_str(json.dumps({"staticPolicies": bodies, "templates": {},
                                                       "templateLinks": []}))


def _named_types(node) -> set[str]:
    """Entity types a policy names by id, in its scope or as a literal (any {"type", "id"})."""
    if isinstance(node, dict):
        found = {node["type"]} if isinstance(node.get("type"), str) and "id" in node else set()
        return found.union(*(_named_types(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_named_types(value) for value in node))
    return set()


def _reads_action(node) -> bool:
    """Whether a policy condition reads the request's action (`action == …`, `action in …`)."""
    if isinstance(node, dict):
        return node.get("Var") == "action" or any(_reads_action(value) for value in node.values())
    if isinstance(node, list):
        return any(_reads_action(value) for value in node)
    return False


def _names_action(body: dict, action: str) -> bool:
    """Whether a policy's action scope can match `action` (no action groups: see _slices)."""
    scope = body["action"]
    if scope["op"] == "==":
        return scope["entity"]["id"] == action
    if scope["op"] == "in":
        return any(e["id"] == action for e in scope.get("entities") or [scope["entity"]])
    return True  # `action` unconstrained
