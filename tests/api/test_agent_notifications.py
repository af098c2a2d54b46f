"""Proactive notifications through the real server: a follow-up after a dated event said in a
past-dated conversation (made once, consumed into the history), a due task, an inactivity
check-in, the background sweep, bad input, and another project's agent."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from memgrpc.v1 import agent_state_pb2 as apb
from tests.api.agenthelpers import AgentConv, days_ago, ts
from tests.conftest import NewKey, ServerHandle
from tests.helpers import md
from tests.intelhelpers import Conv, uid
from tests.memhelpers import details


@pytest.fixture
def ac(conv: Conv) -> AgentConv:
    return AgentConv(conv)


async def run(ac: AgentConv, agent: str, user: str = "", **kw: object) -> list[apb.Notification]:
    resp = await ac.agents.RunNotificationChecks(
        apb.RunNotificationChecksRequest(agent_id=agent, user_id=user, **kw),  # type: ignore[arg-type]
        metadata=md(ac.key),
    )
    return list(resp.created)


async def listed(ac: AgentConv, agent: str, **kw: object) -> list[apb.Notification]:
    resp = await ac.agents.ListNotifications(
        apb.ListNotificationsRequest(agent_id=agent, **kw),  # type: ignore[arg-type]
        metadata=md(ac.key),
    )
    return list(resp.notifications)


async def test_follow_up_after_a_past_event_once_then_history(ac: AgentConv) -> None:
    agent, user = await ac.agent(), uid("drive")
    said = days_ago(5)
    await ac.talk(agent, user, "My driving test is tomorrow, wish me luck!", at=said)
    # before the event's day is over: nothing yet
    assert not [n for n in await run(ac, agent, user, now=ts(said)) if n.check_type != "inactivity"]
    made = [n for n in await run(ac, agent, user) if n.check_type == "follow_up"]
    assert len(made) == 1
    n = made[0]
    assert n.id.startswith("ntf_") and n.user_id == user and n.agent_id == agent
    assert "driving test" in n.generated_message and "how did" in n.generated_message.lower()
    event_day = (said + timedelta(days=1)).date()
    assert n.due_time.ToDatetime().date() == event_day + timedelta(days=1)
    assert n.status == apb.NOTIFICATION_STATUS_PENDING and n.source_id
    # never twice for the same cause
    assert not [x for x in await run(ac, agent, user) if x.check_type == "follow_up"]
    pending = await listed(ac, agent, user_id=user)
    assert [x.id for x in pending if x.check_type == "follow_up"] == [n.id]
    consumed = await ac.agents.ConsumeNotification(
        apb.ConsumeNotificationRequest(agent_id=agent, notification_id=n.id), metadata=md(ac.key)
    )
    assert consumed.status == apb.NOTIFICATION_STATUS_CONSUMED and consumed.consume_time.seconds
    # consuming again is idempotent: the same notification, the same consume time
    again = await ac.agents.ConsumeNotification(
        apb.ConsumeNotificationRequest(agent_id=agent, notification_id=n.id), metadata=md(ac.key)
    )
    assert again == consumed
    assert n.id not in [x.id for x in await listed(ac, agent, user_id=user)]
    history = await listed(ac, agent, user_id=user, status=apb.NOTIFICATION_STATUS_CONSUMED)
    assert [x.id for x in history] == [n.id]
    # consumed, it is still never made again
    assert not [x for x in await run(ac, agent, user) if x.check_type == "follow_up"]


async def test_due_task_and_relative_dates(ac: AgentConv) -> None:
    agent, user = await ac.agent(), uid("task")
    await ac.talk(agent, user, "I need to finish my thesis by 2020-03-10.", at=days_ago(3000))
    await ac.talk(agent, user, "My exam is in 3 days.", at=days_ago(20))
    made = {n.check_type: n for n in await run(ac, agent, user)}
    assert "finish my thesis" in made["due_task"].generated_message
    assert made["due_task"].due_time.ToDatetime().date().isoformat() == "2020-03-11"
    exam = made["follow_up"]
    assert "exam" in exam.generated_message
    assert exam.due_time.ToDatetime().date() == (days_ago(20) + timedelta(days=4)).date()


async def test_inactivity_check_in(ac: AgentConv) -> None:
    agent, idle, active = await ac.agent(), uid("idle"), uid("active")
    await ac.talk(agent, idle, "Hello!", at=days_ago(9))
    await ac.talk(agent, active, "Hello!")
    made = await run(ac, agent)
    assert [(n.user_id, n.check_type) for n in made] == [(idle, "inactivity")]
    assert "9 days" in made[0].generated_message
    assert not await run(ac, agent)
    # talking again starts a new idle stretch: a new check-in once it is long enough
    await ac.talk(agent, idle, "I'm back", at=days_ago(8))
    assert [n.check_type for n in await run(ac, agent, idle)] == ["inactivity"]


async def test_the_background_sweep_makes_them(ac: AgentConv, server: ServerHandle) -> None:
    agent, user = await ac.agent(), uid("sweep")
    await ac.talk(agent, user, "Our wedding is on June 1st.", at=days_ago(400))
    made = 0
    for _ in range(100):  # other tests' relations may be due too: sweep until ours are done
        n = await server.app.agent_engine.sweeper.run_once()
        made += n
        if not n:
            break
    kinds = sorted(n.check_type for n in await listed(ac, agent, user_id=user))
    assert kinds == ["follow_up", "inactivity"]
    assert not await run(ac, agent, user)  # the sweep's are the same causes


async def test_bad_input_and_another_project(ac: AgentConv, new_key: NewKey) -> None:
    agent = await ac.agent()
    user = uid("iso")
    await ac.talk(agent, user, "Hello", at=days_ago(30))
    assert await run(ac, agent)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ac.agents.ListNotifications(
            apb.ListNotificationsRequest(agent_id=agent, status=7),
            metadata=md(ac.key),  # type: ignore[arg-type]
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "status" in details(err.value)[0]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ac.agents.ConsumeNotification(
            apb.ConsumeNotificationRequest(agent_id=agent), metadata=md(ac.key)
        )
    assert "notification_id" in details(err.value)[0]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ac.agents.ConsumeNotification(
            apb.ConsumeNotificationRequest(agent_id=agent, notification_id="ntf_nope"),
            metadata=md(ac.key),
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ac.agents.RunNotificationChecks(
            apb.RunNotificationChecksRequest(user_id="u"), metadata=md(ac.key)
        )
    assert "agent_id" in details(err.value)[0]
    _, other = await new_key()
    theirs = AgentConv(Conv(ac.conv.channel, other))
    for call in (
        theirs.agents.ListNotifications(
            apb.ListNotificationsRequest(agent_id=agent), metadata=md(other)
        ),
        theirs.agents.RunNotificationChecks(
            apb.RunNotificationChecksRequest(agent_id=agent), metadata=md(other)
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # their own agent lists none of ours
    mine = await theirs.agent()
    assert not await listed(theirs, mine)
    ours = await listed(ac, agent)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await theirs.agents.ConsumeNotification(
            apb.ConsumeNotificationRequest(agent_id=mine, notification_id=ours[0].id),
            metadata=md(other),
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
