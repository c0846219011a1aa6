"""`/ws/downloads`: a snapshot on connect (unfinished tasks; with `?include=all`, every task; `?task_id=` one),
then an event per change: `status`, `progress`, and `deleted` when a task it has told of is removed.

The workers that move the bytes are other processes, and the default setup has
no Redis to carry messages between processes, so the consumer follows the
database, where the workers write progress at most twice a second.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from downloads import selectors
from downloads import serializers as shapes

POLL_SECONDS = 0.25
INCLUDES = ("unfinished", "all")


class DownloadProgressConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.task_id = (query.get("task_id") or [None])[0]
        include = (query.get("include") or ["unfinished"])[0]
        await self.accept()
        if include not in INCLUDES:
            await self.send_json({"type": "error", "error": "VALIDATION_ERROR",
                                  "message": f"include: {include!r} is not one of {', '.join(INCLUDES)}"})
            await self.close(code=4400)
            return
        since = datetime.now(timezone.utc)
        tasks = await database_sync_to_async(selectors.snapshot_tasks)(task_id=self.task_id, everything=include == "all")
        self.statuses = {task.id: task.status for task in tasks}
        await self.send_json({"type": "snapshot", "include": include,
                              "tasks": [shapes.task_to_dict(task) for task in tasks]})
        self.follower = asyncio.create_task(self._follow(since))

    async def disconnect(self, code: int) -> None:
        follower = getattr(self, "follower", None)
        if follower:
            follower.cancel()

    async def _follow(self, since: datetime) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            changed = await database_sync_to_async(selectors.tasks_changed_since)(since, self.task_id)
            for task in changed:
                since = max(since, task.updated_at)
                event = "status" if self.statuses.get(task.id) != task.status else "progress"
                self.statuses[task.id] = task.status
                await self.send_json({"type": event, "task": shapes.task_to_dict(task)})
            gone = await database_sync_to_async(selectors.missing_tasks)(list(self.statuses))
            for task_id in gone:
                del self.statuses[task_id]
                await self.send_json({"type": "deleted", "task_id": task_id})
