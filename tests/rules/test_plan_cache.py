"""Plan cache: LRU bound, counters, and the Planner front door."""

from __future__ import annotations

import os
import time

import pytest

from rules.plan import PassThrough, Refuse, Rewrite, plan_statement
from rules.plan_cache import PlanCache, Planner
from tests.rules.test_plan import RULES


def test_lru_evicts_least_recently_used() -> None:
    cache = PlanCache(maxsize=2)
    a, b, c = PassThrough(), Refuse("pgseal: a"), Refuse("pgseal: c")
    cache.put("a", 0, a)
    cache.put("b", 0, b)
    assert cache.get("a", 0) is a  # refreshes a
    cache.put("c", 0, c)
    assert cache.get("b", 0) is None
    assert cache.get("a", 0) is a
    assert cache.get("c", 0) is c
    assert (cache.hits, cache.misses, len(cache)) == (3, 1, 2)
    assert cache.stats.hit_rate == pytest.approx(0.75)


def test_key_includes_declared_parameter_count() -> None:
    cache = PlanCache(maxsize=4)
    cache.put("SELECT $1", 0, PassThrough())
    assert cache.get("SELECT $1", 1) is None
    assert cache.get("SELECT $1", 0) is not None


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PlanCache(0)


def test_many_distinct_texts_keep_memory_bounded() -> None:
    cache = PlanCache(maxsize=1_000)
    plan = PassThrough()
    n = 200_000
    start = time.perf_counter()
    for i in range(n):
        cache.put(f"SELECT * FROM customers WHERE id = {i}", 0, plan)
        assert len(cache) <= 1_000
    elapsed = time.perf_counter() - start
    print(f"plan cache: {n} inserts in {elapsed:.2f} s")
    assert len(cache) == 1_000
    assert cache.get(f"SELECT * FROM customers WHERE id = {n - 1}", 0) is plan
    assert cache.get("SELECT * FROM customers WHERE id = 0", 0) is None


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_million_distinct_texts_keep_memory_bounded() -> None:
    """1M distinct statement texts (an application inlining literals): after the
    cache first fills up, the process does not grow. (RSS, not tracemalloc: that
    would make the million inserts ten times slower.)"""
    cache = PlanCache(maxsize=2_000)
    plan = plan_statement("SELECT phone FROM customers WHERE tax_id = $1", RULES, 1)
    text = "SELECT phone FROM customers WHERE id = {} AND tax_id = $1".format
    for i in range(50_000):
        cache.put(text(i), 1, plan)
    filled = _rss_bytes()
    for i in range(50_000, 1_000_000):
        cache.put(text(i), 1, plan)
    grown = _rss_bytes() - filled
    print(f"plan cache: RSS grew {grown / 1e6:.2f} MB over the last 950k distinct texts")
    assert len(cache) == 2_000
    assert grown < 2 * 1024 * 1024  # 950k texts kept would be > 80 MB
    assert cache.get(text(999_999), 1) is plan
    assert cache.get(text(997_999), 1) is None


def test_planner_caches_plans_but_not_prefilter_passes() -> None:
    planner = Planner(RULES, cache_size=8)
    sql = "SELECT * FROM customers WHERE tax_id = $1"
    first = planner.plan(sql, 1)
    assert isinstance(first, Rewrite)
    assert planner.plan(sql, 1) is first
    assert (planner.cache.hits, planner.cache.misses) == (1, 1)
    assert planner.plan("SELECT 1") == PassThrough()
    assert planner.prefilter_passes == 1
    assert len(planner.cache) == 1


def test_planner_with_many_distinct_protected_texts() -> None:
    planner = Planner(RULES, cache_size=50)
    for i in range(2_000):
        planner.plan(f"INSERT INTO customers (business_id, phone) VALUES ({i}, 'p{i}')")
    assert len(planner.cache) == 50
    assert planner.cache.misses == 2_000
