"""Label groups: named sets of class indices (built-in and user), resolved and scored per frame."""

# A group's score is the sum of its classes' dequantized probabilities. With the uint8 output each
# probability is a multiple of 1/256, so a class under 1/512 counts as 0: on ImageNet images ~960 of
# the 1001 classes read 0 and the outputs sum to 0.93 on average (docs/guide/groups.md). That lost mass is
# spread thin over many classes, almost all outside any group, so `other` is scored as the
# complement, 1 - the summed probability of every class some configured group covers, rather than
# as its own (equally rounded) sum: it gets the mass the rounding dropped. Measured on held-out
# images this answers as well or better than summing `other`'s classes (docs/guide/groups.md).

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from edge.errors import ConfigError

OTHER = "other"  # what no configured group covers
NONE = "none"  # the answer below results.threshold
RESERVED = (OTHER, NONE)
NUM_CLASSES = 1001  # the ImageNet indexing the built-in groups use (0 = background)
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
RANGE_RE = re.compile(r"^(\d+)-(\d+)$")
Member = int | str
MAX_DEPTH = 32  # groups naming groups, this many deep at most (a chain of 1100 overflowed Python's stack)


@dataclass(frozen=True)
class Group:
    name: str
    description: str
    classes: tuple[int, ...]  # sorted, unique


@dataclass(frozen=True)
class GroupScore:
    """One group's score in a result: the sum of its classes' probabilities."""

    name: str
    score: float


@dataclass(frozen=True)
class Spec:
    """A group as written: members are indices, "a-b" ranges or other group names."""

    description: str
    members: tuple[Member, ...]
    where: str  # how errors name it: "groups.feeder" or "built-in group 'bird'"


def builtin_specs() -> dict[str, Spec]:
    """The groups shipped with the package (edge/model/groups.json)."""
    text = resources.files("edge.model").joinpath("groups.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return {
        name: Spec(str(v["description"]), tuple(v["members"]), f"built-in group {name!r}") for name, v in data.items() if not name.startswith("_")
    }


def user_specs(user: Mapping[str, Sequence[Member]], key: str = "groups") -> dict[str, Spec]:
    return {name: Spec(f"user group ({key}.{name})", tuple(members), f"{key}.{name}") for name, members in user.items()}


def all_specs(user: Mapping[str, Sequence[Member]], key: str = "groups") -> dict[str, Spec]:
    """Built-ins overlaid with the user's groups (a user group replaces a built-in of its name)."""
    return {**builtin_specs(), **user_specs(user, key)}


def resolve(specs: Mapping[str, Spec], name: str, num_classes: int = NUM_CLASSES) -> Group:
    """Expand one group to its sorted class indices; ConfigError naming the key on any fault."""
    classes = sorted(_expand(specs, name, num_classes, ()))
    return Group(name, specs[name].description, tuple(classes))


def _expand(specs: Mapping[str, Spec], name: str, num_classes: int, stack: tuple[str, ...]) -> set[int]:
    spec = specs[name]
    if name in stack:
        where = specs[stack[0]].where
        if name == stack[-1] and name in builtin_specs() and not spec.where.startswith("built-in"):
            # bird = ["bird", 336]: the user's group replaces the built-in one of its name, which is then gone
            raise ConfigError(f"{where}: a group named {name!r} replaces the built-in group {name!r}, so {name!r} in it names itself; rename it")
        raise ConfigError(f"{where}: group {name!r} names itself ({' -> '.join((*stack, name))})")
    if len(stack) >= MAX_DEPTH:
        chain = " -> ".join((*stack[:3], "…", name))
        raise ConfigError(f"{specs[stack[0]].where}: groups nest more than {MAX_DEPTH} deep ({chain}); name classes directly")
    if not spec.members:
        raise ConfigError(f"{spec.where}: empty group; list class indices, 'a-b' ranges or group names")
    out: set[int] = set()
    for i, m in enumerate(spec.members):
        where = f"{spec.where}[{i}]"
        if isinstance(m, bool) or not isinstance(m, (int, str)):
            raise ConfigError(f"{where}: expected a class index, an 'a-b' range or a group name, got {m!r}")
        if isinstance(m, int):
            out.add(_index(m, num_classes, where))
        elif (r := RANGE_RE.match(m)) is not None:
            lo, hi = _index(int(r[1]), num_classes, where), _index(int(r[2]), num_classes, where)
            if lo > hi:
                raise ConfigError(f"{where}: range {m!r} runs backwards")
            out.update(range(lo, hi + 1))
        elif m.isdigit():
            out.add(_index(int(m), num_classes, where))
        elif m in specs:
            out |= _expand(specs, m, num_classes, (*stack, name))
        else:
            raise ConfigError(f"{where}: unknown group {m!r} (built-in: {', '.join(sorted(builtin_specs()))}; or define it under [groups])")
    return out


def _index(i: int, num_classes: int, where: str) -> int:
    if not 0 <= i < num_classes:
        raise ConfigError(f"{where}: class index {i} out of range 0-{num_classes - 1}")
    return i


def check(user: Mapping[str, Sequence[Member]], names: Sequence[str], key: str = "groups", names_key: str = "results.groups") -> None:
    """Validate every user group and every configured name (config parse time, 1001 classes)."""
    for name in user:
        if not NAME_RE.match(name) or name in RESERVED:
            raise ConfigError(f"{key}.{name}: a group name is lower-case letters, digits and _ (not {', '.join(RESERVED)})")
    specs = all_specs(user, key)
    for name in user:
        resolve(specs, name)
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name not in specs:
            raise ConfigError(
                f"{names_key}[{i}]: unknown group {name!r} (built-in: {', '.join(sorted(builtin_specs()))}; or define it under [groups])"
            )
        if name in seen:
            raise ConfigError(f"{names_key}[{i}]: {name!r} is listed twice")
        seen.add(name)


def unused(user: Mapping[str, Sequence[Member]], names: Sequence[str]) -> list[str]:
    """User groups that neither `names` nor a group they name (at any depth) refers to: defined, never used."""
    specs = all_specs(user)
    used: set[str] = set()
    todo = [n for n in names if n in specs]
    while todo:
        name = todo.pop()
        if name not in used:
            used.add(name)
            todo += [m for m in specs[name].members if isinstance(m, str) and m in specs]
    return [name for name in user if name not in used]


def configured(user: Mapping[str, Sequence[Member]], names: Sequence[str], num_classes: int, names_key: str = "results.groups") -> tuple[Group, ...]:
    """The configured groups for a model of `num_classes` outputs, in the configured order."""
    check(user, names, names_key=names_key)
    specs = all_specs(user)
    out = []
    for i, name in enumerate(names):
        try:
            out.append(resolve(specs, name, num_classes))
        except ConfigError as exc:
            raise ConfigError(f"{names_key}[{i}]: {name!r} does not fit this model's {num_classes} classes: {exc}") from exc
    return tuple(out)


class GroupScorer:
    """Per-frame group scores: one (groups + 1) x classes matrix product into a preallocated buffer.
    The last entry is `other`: 1 - the probability of the classes some group covers."""

    def __init__(self, groups: Sequence[Group], num_classes: int) -> None:
        self.groups = tuple(groups)
        self.names = (*(g.name for g in groups), OTHER)
        # members[i, c]: class c belongs to answer i; `other` holds what no group covers.
        self.members = np.zeros((len(self.names), num_classes), bool)
        for row, g in enumerate(self.groups):
            self.members[row, list(g.classes)] = True
        self.members[-1] = ~self.members[:-1].any(axis=0)
        # The last row sums the covered classes; scores() turns it into 1 - that.
        self.matrix = self.members.astype(np.float32)
        self.matrix[-1] = ~self.members[-1]
        self.out = np.zeros(len(self.names), np.float32)

    def scores(self, probs: np.ndarray) -> np.ndarray:
        """Group scores for one frame's probabilities; the returned buffer is reused every call."""
        np.matmul(self.matrix, probs, out=self.out)
        self.out[-1] = max(0.0, 1.0 - float(self.out[-1]))
        return self.out

    def scores_batch(self, probs: np.ndarray) -> np.ndarray:
        """Group scores for an images x classes array (evaluation), as `scores` row by row."""
        out: np.ndarray = probs @ self.matrix.T
        out[:, -1] = np.maximum(0.0, 1.0 - out[:, -1])
        return out
