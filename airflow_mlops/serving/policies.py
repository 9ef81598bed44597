"""Routing policies of a serving endpoint, declared as data and validated on construction (no Airflow import).

A deployment names its variants (a registered model version each) and one policy:

- ``single``: every request goes to the one variant.
- ``canary``: ``weight`` of the requests (at random) go to ``candidate``, the rest to ``primary``.
- ``ab``: requests are split by ``weights`` and stick to a variant by a hash of the request key, so
  one user always sees the same model.
- ``shadow``: the caller gets ``primary``'s answer; ``shadow`` scores a copy, and both are logged.
- ``bandit``: Thompson sampling over the variants from Beta posteriors of the rewards posted to
  ``/v1/feedback`` (reward 1 = the prediction was useful, 0 = it was not). The posteriors live in
  the server's state (``serving.state``), shared by its replicas when it is Redis; a policy is
  only the rule.
- ``chain``: one composite routine; each variant's probability is added to the rows as a column
  ``<output_column>`` before the next runs, the last one answers.
- ``ensemble``: one composite routine; the answer is the weighted mean of every variant's probability.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_mlops.exceptions import PolicyError

KINDS = ("single", "canary", "ab", "shadow", "bandit", "chain", "ensemble")


@dataclass(frozen=True)
class Route:
    """Where one request goes: the variants whose answer the caller gets (several for a
    composite), how they combine, and the variants that score a copy only."""

    serve: tuple[str, ...]
    combine: str = "first"  # first | chain | ensemble
    shadows: tuple[str, ...] = ()


@dataclass
class Policy:
    """A validated policy over named variants; ``route(key)`` picks the variants of one request."""

    kind: str
    variants: Sequence[str]
    primary: str | None = None
    candidate: str | None = None
    shadow: str | None = None
    weight: float = 0.0
    weights: Mapping[str, float] = field(default_factory=dict)
    output_column: str = "upstream_probability"

    def __post_init__(self) -> None:
        variants = list(self.variants)
        if self.kind not in KINDS:
            raise PolicyError(f"policy kind {self.kind!r} is not one of {list(KINDS)}")
        if not variants or len(set(variants)) != len(variants):
            raise PolicyError(f"policy variants must be distinct names, at least one, got {variants!r}")
        needed = {"single": 1, "canary": 2, "shadow": 2, "ab": 2, "bandit": 2, "chain": 2, "ensemble": 2}[
            self.kind
        ]
        if len(variants) < needed or (
            self.kind in ("single", "canary", "shadow") and len(variants) != needed
        ):
            raise PolicyError(
                f"a {self.kind} policy takes {'exactly' if self.kind in ('single', 'canary', 'shadow') else 'at least'} "
                f"{needed} variant(s), got {variants!r}"
            )
        if self.kind in ("canary", "shadow"):
            other = self.candidate if self.kind == "canary" else self.shadow
            other_name = "candidate" if self.kind == "canary" else "shadow"
            if self.primary not in variants or other not in variants or self.primary == other:
                raise PolicyError(
                    f"a {self.kind} policy needs primary and {other_name} among the variants "
                    f"{variants!r}, got primary={self.primary!r}, {other_name}={other!r}"
                )
        if self.kind == "single":
            self.primary = variants[0]
        if self.kind == "canary" and not 0.0 <= self.weight <= 1.0:
            raise PolicyError(f"canary weight must be within [0, 1], got {self.weight!r}")
        if self.kind in ("ab", "ensemble"):
            weights = dict(self.weights) or {v: 1.0 for v in variants}
            if set(weights) != set(variants):
                raise PolicyError(
                    f"{self.kind} weights must name every variant {variants!r}, got {sorted(weights)!r}"
                )
            if (
                any(not isinstance(w, (int, float)) or w < 0 for w in weights.values())
                or sum(weights.values()) <= 0
            ):
                raise PolicyError(
                    f"{self.kind} weights must be non-negative numbers with a positive sum, got {weights!r}"
                )
            total = float(sum(weights.values()))
            self.weights = {v: float(w) / total for v, w in weights.items()}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], variants: Sequence[str]) -> Policy:
        allowed = {"kind", "primary", "candidate", "shadow", "weight", "weights", "output_column"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise PolicyError(f"policy fields {unknown} are unknown; allowed: {sorted(allowed)}")
        if "kind" not in spec:
            raise PolicyError(f"policy needs a kind (one of {list(KINDS)}), got {dict(spec)!r}")
        weight = spec.get("weight", 0.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise PolicyError(f"canary weight must be a number, got {weight!r}")
        return cls(
            kind=str(spec["kind"]),
            variants=list(variants),
            primary=spec.get("primary"),
            candidate=spec.get("candidate"),
            shadow=spec.get("shadow"),
            weight=float(weight),
            weights=dict(spec.get("weights") or {}),
            output_column=str(spec.get("output_column", cls.output_column)),
        )

    def to_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": self.kind}
        if self.kind in ("canary", "shadow"):
            spec["primary"] = self.primary
        if self.kind == "canary":
            spec.update(candidate=self.candidate, weight=self.weight)
        if self.kind == "shadow":
            spec["shadow"] = self.shadow
        if self.kind in ("ab", "ensemble"):
            spec["weights"] = dict(self.weights)
        if self.kind == "chain":
            spec["output_column"] = self.output_column
        return spec

    def route(
        self,
        key: str | None = None,
        rng: random.Random | None = None,
        arms: Mapping[str, tuple[float, float]] | None = None,
    ) -> Route:
        """The variants for one request (``key`` makes A/B sticky; ``rng`` makes tests repeatable;
        ``arms`` are a bandit's Beta posteriors ``(alpha, beta)`` per variant, Beta(1, 1) where absent)."""
        rng = rng or _RNG
        variants = list(self.variants)
        if self.kind == "single":
            return Route((variants[0],))
        if self.kind == "canary":
            assert self.primary is not None and self.candidate is not None
            return Route((self.candidate if rng.random() < self.weight else self.primary,))
        if self.kind == "shadow":
            assert self.primary is not None and self.shadow is not None
            return Route((self.primary,), shadows=(self.shadow,))
        if self.kind == "ab":
            point = _unit_hash(key) if key is not None else rng.random()
            return Route((_pick(self.weights, point),))
        if self.kind == "bandit":
            arms = arms or {}
            draws = {v: rng.betavariate(*arms.get(v, (1.0, 1.0))) for v in variants}
            return Route((max(draws, key=draws.__getitem__),))
        return Route(tuple(variants), combine=self.kind)

    def check_reward(self, variant: str, reward: float) -> None:
        """A ``PolicyError`` unless ``reward`` (in [0, 1]) can be feedback for ``variant`` of this bandit."""
        if self.kind != "bandit":
            raise PolicyError(
                f"feedback rewards need a bandit policy; this endpoint's policy is {self.kind!r}"
            )
        if variant not in self.variants:
            raise PolicyError(f"variant {variant!r} is not an arm of this bandit ({sorted(self.variants)})")
        if not 0.0 <= reward <= 1.0:
            raise PolicyError(f"reward must be within [0, 1], got {reward!r}")


def posteriors(arms: Mapping[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    """A bandit's posteriors as the API shows them: alpha, beta and the mean reward of each arm."""
    return {v: {"alpha": a, "beta": b, "mean": a / (a + b)} for v, (a, b) in arms.items()}


_RNG = random.Random()


def _unit_hash(key: str) -> float:
    """A stable point in [0, 1) for a request key (the same on every replica and after restarts)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


def _pick(weights: Mapping[str, float], point: float) -> str:
    cumulative = 0.0
    for variant, weight in weights.items():
        cumulative += weight
        if point < cumulative:
            return variant
    return next(reversed(list(weights)))
