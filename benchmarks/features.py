"""Run 5: what each billing feature costs a bill run. The same closing period — the same
subscriptions and events per entity — billed five ways in one benchmark, interleaved, each
against the plain run measured beside it:

- plain: a unit price on one meter (the control, measured first and last, on two
  entities of its own, after a warm-up run of a third that is not counted);
- credits: every customer holds a prepaid grant that pays part of its invoice (SPEC §12);
- taxes: the entity charges three tax rates on every invoice (SPEC §15);
- filters: a charge with five filters prices six models by an event property (five
  groups and the default group: six lines per invoice, SPEC §13);
- plan changes: 10 % of the subscriptions changed plan in the middle of the period
  (SPEC §14).

    .venv/bin/python -m benchmarks.bench --only features [--quick]

Targets (the issues): credits ≤ ×1.2, taxes ≤ ×1.1, filters ≤ ×1.3, plan changes ≤ ×1.3.
"""

from __future__ import annotations

import time
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.bench import Bench

VARIANTS = (("warm-up", "fw"), ("plain", "fp"), ("credits", "fc"), ("taxes", "ft"),
            ("filters", "ff"), ("plan changes", "fh"), ("plain", "fq"))  # control first, last
TARGETS = {"credits": 1.2, "taxes": 1.1, "filters": 1.3, "plan changes": 1.3}


def setup(bench: Bench, subs: int, n: int) -> None:
    """Seven entities with ``subs`` subscriptions each and ``n`` October events per entity
    (data, not the measure)."""
    from services import catalog as catalog_service

    unit = {"id": "tokens", "type": "usage", "meter": "tokens", "model": "unit",
            "unit_price": "0.002"}
    catalog_service.apply_document({
        "taxes": [{"id": "vat", "rate": "19"}, {"id": "city", "rate": "2.5"},
                  {"id": "levy", "rate": "1"}],
        "entities": [{"id": f"feat-{p}", "timezone": "UTC", "invoice_prefix": p.upper(),
                      **({"taxes": ["vat", "city", "levy"]} if p == "ft" else {})}
                     for _, p in VARIANTS],
        "meters": [{"id": "tokens", "aggregation": "sum"}],
        "plans": [
            {"id": "plain", "currency": "USD", "interval": "month", "charges": [unit]},
            {"id": "plain-b", "currency": "USD", "interval": "month",
             "charges": [{**unit, "unit_price": "0.003"}]},
            {"id": "by-model", "currency": "USD", "interval": "month", "charges": [{
                **unit, "filters": [
                    {"id": f"m{k}", "match": {"model": [f"m{k}"]}, "model": "unit",
                     "unit_price": f"0.00{k}"} for k in range(1, 6)]}]}],
        "customers": [{"id": f"{p}-{i}", "entity": f"feat-{p}"}
                      for _, p in VARIANTS for i in range(subs)]})
    for _, p in VARIANTS:
        bench.sql("INSERT INTO subscriptions (id, customer_id, entity_id, plan_id, "
                  "plan_version, start, start_at, sent_at, created_at, next_k, next_boundary, "
                  "next_boundary_at) SELECT %s || '-s-' || g, %s || '-' || g, %s, %s, 1, "
                  "'2026-10-01', '2026-10-01T00:00:00Z', '2026-09-01T00:00:00Z', "
                  "'2026-09-01T00:00:00Z', 1, '2026-11-01', '2026-11-01T00:00:00Z' "
                  "FROM generate_series(0, %s - 1) g", p, p, f"feat-{p}",
                  "by-model" if p == "ff" else "plain", subs)
    bench.sql("INSERT INTO credit_grants (id, customer_id, currency, amount, priority, "
              "granted_at, expires_at) SELECT 'fc-g-' || g, 'fc-' || g, 'USD', 5.00, 50, "
              "'2026-09-15T00:00:00Z', NULL FROM generate_series(0, %s - 1) g", subs)
    bench.sql("INSERT INTO plan_changes (subscription_id, since, since_at, plan_id, "
              "plan_version, sent_at, created_at) SELECT 'fh-s-' || g, '2026-10-16', "
              "'2026-10-16T00:00:00Z', 'plain-b', 1, '2026-10-10T00:00:00Z', "
              "'2026-10-10T00:00:00Z' FROM generate_series(0, %s - 1) g WHERE g %% 10 = 0",
              subs)
    bench.sql("DROP INDEX ix_usage_customer_meter_ts")
    for _, p in VARIANTS:
        bench.sql("INSERT INTO usage_events (key, customer_id, meter_id, quantity, timestamp, "
                  "properties, ingested_at) SELECT %s || '-e-' || g, %s || '-' || (g %% %s), "
                  "'tokens', (g %% 1000 + 1)::numeric / 10, '2026-10-01'::timestamptz "
                  "+ (g %% (31 * 86400)) * interval '1 second', jsonb_build_object('model', "
                  "'m' || (g %% 6)), "
                  "'2026-10-31T00:00:00Z' FROM generate_series(1, %s) g", p, p, subs, n)
    bench.sql("CREATE INDEX ix_usage_customer_meter_ts ON usage_events "
              "(customer_id, meter_id, timestamp)")
    bench.sql("VACUUM ANALYZE")


def features_run(bench: Bench) -> dict[str, float]:
    subs, n = bench.args.subscriptions, bench.args.bill_events // 5
    from benchmarks.bench import say
    from services.settings import Settings
    from workers.broker import redis_broker, use

    say(f"features: 7 entities × {subs:,} subscriptions × {n:,} October events")
    loading = time.perf_counter()
    setup(bench, subs, n)
    say(f"  loaded in {time.perf_counter() - loading:.0f} s")
    use(redis_broker(Settings()))
    seconds: dict[str, float] = {}
    controls: list[float] = []
    for name, p in VARIANTS:
        took = bench.timed_run(f"feat-{p}", date(2026, 11, 1), subs)
        if name == "plain":
            controls.append(took)
        elif name != "warm-up":  # caches and workers warmed by a plain run, not counted
            seconds[name] = took
        say(f"  {name}: {took:.1f} s")
    check(bench, subs)
    control = sum(controls) / len(controls)
    bench.results.append(("5. features: the plain run (control)", f"{control:.1f} s",
                          f"{subs:,} invoices over {n:,} events; first and last: "
                          + " / ".join(f"{c:.1f} s" for c in controls)))
    for name, took in seconds.items():
        ratio = took / control
        bench.results.append((f"5. … with {name}", f"{took:.1f} s",
                              f"×{ratio:.2f} the plain run (target ≤ ×{TARGETS[name]})"))
    return seconds


def check(bench: Bench, subs: int) -> None:
    """Each run issued every invoice, and did what its feature says."""
    for _, p in VARIANTS:
        issued = bench.sql("SELECT count(*) FROM invoices WHERE entity_id = %s AND number "
                           "IS NOT NULL", f"feat-{p}")[0][0]
        assert int(issued) == subs, (p, issued)
    credited = bench.sql("SELECT count(DISTINCT invoice_id) FROM credit_applications")[0][0]
    assert int(credited) == subs, f"{credited} of {subs} invoices paid by credits"
    taxed = bench.sql("SELECT count(*) FROM invoice_taxes")[0][0]
    assert int(taxed) == 3 * subs, f"{taxed} tax rows, not 3 per invoice"
    grouped = bench.sql("SELECT count(*) FROM invoice_lines l JOIN invoices i ON "
                        "i.id = l.invoice_id WHERE i.entity_id = 'feat-ff'")[0][0]
    assert int(grouped) == 6 * subs, f"{grouped} lines, not 6 per invoice"
    changed = bench.sql("SELECT count(*) FROM invoice_lines l JOIN invoices i ON "
                        "i.id = l.invoice_id WHERE i.entity_id = 'feat-fh'")[0][0]
    assert int(changed) == subs + subs // 10, f"{changed} lines on the changed plans"
