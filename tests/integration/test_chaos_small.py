"""A small chaos run inside `make test`; `make chaos` runs the big one."""

from __future__ import annotations

from tests.chaos.harness import Chaos, Config, summary
from tests.conftest import Infra


async def test_nothing_lost_nothing_doubled_under_kills_restarts_and_a_replay(infra: Infra) -> None:
    cfg = Config(
        kafka=infra.kafka,
        database_url=infra.database_url,
        seed=11,
        customers=300,
        events=3000,
        instances=2,
        kill_every=2.0,
        min_kills=3,
        balance_phase_seconds=6.0,
        restart_kafka=False,
        restart_postgres=True,
    )
    result = await Chaos(cfg).execute()
    print(result.line(), summary(result))
    assert result.counts["lost"] == 0, result.line()
    assert result.counts["doubled"] == 0, result.line()
    assert result.counts["double_charges"] == 0, result.line()
    assert result.counts["divergent"] == 0, result.line()
    assert result.dead_missing == 0, summary(result)
    assert result.kills >= 3
    assert result.restarts == ["postgres"]
    assert result.unclean_exits == 0, summary(result)
