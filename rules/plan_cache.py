"""Bounded LRU of plans keyed by (SQL text, declared parameter count).

Plans are immutable and depend only on the text, the declared parameter count and
the rules, so one cache serves every connection of a process; a rules reload
makes a new :class:`Planner` (and so a new, empty cache). The cache is an
``OrderedDict`` with move-to-end on hit and pop-oldest on insert: O(1) both ways,
and its size never exceeds ``maxsize`` whatever the number of distinct texts
(an application that inlines literals produces one text per statement).

Texts the prefilter passes through are cheap to decide again and are not cached,
so they cannot evict real plans.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from rules.model import Rules
from rules.plan import PassThrough, Plan, plan_statement, prefilter_for

__all__ = ["DEFAULT_PLAN_CACHE_SIZE", "CacheStats", "PlanCache", "Planner"]

DEFAULT_PLAN_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    size: int
    maxsize: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class PlanCache:
    """LRU map (sql, declared_param_count) -> Plan with hit/miss counters.

    >>> cache = PlanCache(maxsize=1)
    >>> cache.put("SELECT 1", 0, PassThrough()); cache.put("SELECT 2", 0, PassThrough())
    >>> cache.get("SELECT 1", 0) is None, len(cache)
    (True, 1)
    """

    __slots__ = ("_entries", "hits", "maxsize", "misses")

    def __init__(self, maxsize: int = DEFAULT_PLAN_CACHE_SIZE) -> None:
        if maxsize < 1:
            raise ValueError("plan cache size must be at least 1")
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[str, int], Plan] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sql: str, declared_param_count: int) -> Plan | None:
        key = (sql, declared_param_count)
        plan = self._entries.get(key)
        if plan is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return plan

    def put(self, sql: str, declared_param_count: int, plan: Plan) -> None:
        key = (sql, declared_param_count)
        self._entries[key] = plan
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    @property
    def stats(self) -> CacheStats:
        return CacheStats(self.hits, self.misses, len(self._entries), self.maxsize)


class Planner:
    """The proxy's entry point: prefilter, then cache, then ``plan_statement``."""

    __slots__ = ("_may_concern", "cache", "prefilter_passes", "rules")

    def __init__(self, rules: Rules, cache_size: int = DEFAULT_PLAN_CACHE_SIZE) -> None:
        self.rules = rules
        self.cache = PlanCache(cache_size)
        self._may_concern = prefilter_for(rules).may_concern
        self.prefilter_passes = 0

    def plan(self, sql: str, declared_param_count: int = 0) -> Plan:
        if not self._may_concern(sql):
            self.prefilter_passes += 1
            return _PASS
        plan = self.cache.get(sql, declared_param_count)
        if plan is None:
            plan = plan_statement(sql, self.rules, declared_param_count)
            self.cache.put(sql, declared_param_count, plan)
        return plan


_PASS = PassThrough()
