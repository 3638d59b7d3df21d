"""The supervisor's admin API (`telephony-bot serve` with an admin port): one API for all
workers, each of which serves its own internal API on 127.0.0.1 (see admin/cluster.py)."""

from __future__ import annotations

from pathlib import Path

from telephony_bot.admin.cluster import ClusterBackend, WorkerApi, worker_admin_port
from telephony_bot.admin.server import AdminServer, build_app, check_bind

WORKER_ADMIN_HOST = "127.0.0.1"  # workers' internal APIs never leave this machine


class SupervisorAdmin:
    def __init__(
        self,
        host: str,
        port: int,
        token: str | None,
        workers: list[int],
        records_path: Path | None = None,
        front_door_run_dir: Path | None = None,
    ) -> None:
        check_bind(host, token)
        apis = [
            WorkerApi(i, f"http://{WORKER_ADMIN_HOST}:{worker_admin_port(port, i)}")
            for i in workers
        ]
        self.backend = ClusterBackend(apis, token, front_door_run_dir)
        self.server = AdminServer(build_app(self.backend, token, records_path), host, port)

    async def start(self) -> None:
        await self.backend.start()
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()
        await self.backend.stop()
