"""AgentService's notification RPCs (a mixin of AgentServicer): list, consume and run the
proactive checks. Uses `self._notifications` (core Notifications)."""

from __future__ import annotations

import grpc

from memgrpc.api import convert
from memgrpc.core.access import principal
from memgrpc.core.agents.engine import STATUSES, Notification, Notifications
from memgrpc.core.kernel import PageRequest, Violations
from memgrpc.v1 import agent_state_pb2 as spb


def notification_to_pb(n: Notification) -> spb.Notification:
    return spb.Notification(
        id=n.id,
        agent_id=n.agent_id,
        instance_id=n.instance_id,
        user_id=n.user_id,
        check_type=n.check_type,
        generated_message=n.generated_message,
        status=STATUSES.index(n.status) + 1,  # type: ignore[arg-type]
        due_time=convert.to_ts(n.due_time),
        create_time=convert.to_ts(n.create_time),
        consume_time=convert.to_ts(n.consume_time),
        source_id=n.source_id,
        metadata=convert.dict_to_struct(n.metadata),
    )


class NotificationRpcs:
    _notifications: Notifications

    async def ListNotifications(
        self, request: spb.ListNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> spb.ListNotificationsResponse:
        v = Violations()
        status = "pending"
        if request.status == spb.NOTIFICATION_STATUS_CONSUMED:
            status = "consumed"
        elif request.status not in (0, spb.NOTIFICATION_STATUS_PENDING):
            v.add("status", f"unknown NotificationStatus value {request.status}")
        v.raise_if_any()
        listing = await self._notifications.list(
            principal.current().project_id,
            request.agent_id,
            request.user_id,
            request.instance_id,
            status,
            PageRequest(size=request.page_size, token=request.page_token),
        )
        return spb.ListNotificationsResponse(
            notifications=[notification_to_pb(n) for n in listing.items],
            next_page_token=listing.next_page_token,
            total_size=listing.total_size,
        )

    async def ConsumeNotification(
        self, request: spb.ConsumeNotificationRequest, context: grpc.aio.ServicerContext
    ) -> spb.Notification:
        # idempotent by itself (a consumed notification is returned unchanged): no request log
        n = await self._notifications.consume(
            principal.current().project_id, request.agent_id, request.notification_id
        )
        return notification_to_pb(n)

    async def RunNotificationChecks(
        self, request: spb.RunNotificationChecksRequest, context: grpc.aio.ServicerContext
    ) -> spb.RunNotificationChecksResponse:
        v = Violations()
        now = convert.opt_timestamp(v, "now", request, "now")
        v.raise_if_any()
        made = await self._notifications.run_checks(
            principal.current().project_id, request.agent_id, request.user_id, now
        )
        return spb.RunNotificationChecksResponse(created=[notification_to_pb(n) for n in made])
