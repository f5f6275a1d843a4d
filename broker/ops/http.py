"""The broker's HTTP side: the management API + UI and the Prometheus endpoint, as one node
``Service`` (``broker.node.node.Service``).

``start`` runs after the AMQP listener is bound. aiohttp and prometheus_client are imported in
a worker thread so the event loop keeps answering AMQP handshakes meanwhile (importing them
takes ~150 ms, longer than the broker's whole cold start). A port that cannot be bound stops
the node's start (``StartupError`` naming the port and the setting that chose it), as in
RabbitMQ: a broker without its API would leave the CLI and monitoring talking to whatever
else holds the port. Bound ports are published
on ``Node.management_port`` / ``Node.prometheus_port`` (useful with port 0). Nothing starts
when both ports are off (the Config default: tests, embedding).

In cluster mode the management listener takes PROXY headers from cluster peers
(``broker.cluster.proxy.Acceptor``): a follower forwarding a request names the client.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import TYPE_CHECKING

from broker.node.node import StartAborted
from broker.node.startup import port_error

if TYPE_CHECKING:
    from aiohttp import web

    from broker.node.node import Node

    from .mgmt.sampler import Sampler

log = logging.getLogger("broker.http")


def _import_all() -> None:
    for name in ("aiohttp.web", "prometheus_client", "broker.ops.mgmt.app",
                 "broker.ops.metrics"):
        importlib.import_module(name)


class HttpService:
    def __init__(self) -> None:
        self.runners: list[web.AppRunner] = []
        self.servers: list[asyncio.base_events.Server] = []
        self.sampler: Sampler | None = None  # the management sampler, when it runs

    async def start(self, node: Node) -> None:
        cfg = node.config
        if cfg.management_port is None and cfg.prometheus_port is None:
            return
        await asyncio.get_running_loop().run_in_executor(None, _import_all)
        if node.stopping:  # a SIGTERM while importing: the node is undoing its start
            return
        from .mgmt.app import build_app
        from .mgmt.util import SAMPLER_KEY

        if cfg.management_port is not None:
            app = build_app(node)
            runner, node.management_port = await self._serve(
                node, app, cfg.management_host or cfg.host, "management_port",
                "the management API", "Management plugin", peers=node.cluster is not None)
            self.sampler = app[SAMPLER_KEY]
        if cfg.prometheus_port is not None:
            runner, node.prometheus_port = await self._serve(
                node, metrics_app(node), cfg.prometheus_host or cfg.host, "prometheus_port",
                "Prometheus metrics", "Prometheus metrics")

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        self.servers.clear()
        for runner in self.runners:
            await runner.cleanup()
        self.runners.clear()


    async def _serve(self, node: Node, app: web.Application, host: str, field: str,
                     purpose: str, what: str, peers: bool = False) -> tuple[web.AppRunner, int]:
        from aiohttp import web

        port = getattr(node.config, field)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        if node.stopping:  # a SIGTERM meanwhile: the node is undoing its start
            await runner.cleanup()
            raise StartAborted("the node is stopping")
        try:
            if peers:
                bound = await self._serve_peers(node, runner, host, port)
            else:
                site = web.TCPSite(runner, host, port, reuse_address=True)
                await site.start()
                # aiohttp keeps the site's asyncio.Server private (Optional until started)
                bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        except OSError as exc:
            await runner.cleanup()
            raise port_error(node.config, field, purpose, host, port, exc) from None
        self.runners.append(runner)
        if node.stopping:  # stopped while it started: the node's stop closes it
            raise StartAborted("the node is stopping")
        log.info("%s: HTTP (non-TLS) listener started on port %d", what, bound)
        return runner, bound

    async def _serve_peers(self, node: Node, runner: web.AppRunner, host: str,
                           port: int) -> int:
        from broker.cluster.proxy import Acceptor

        cluster = node.cluster
        assert cluster is not None
        protocols = runner.server  # aiohttp's protocol factory
        assert protocols is not None
        server = await asyncio.get_running_loop().create_server(
            lambda: Acceptor(protocols, cluster.is_peer), host, port, reuse_address=True,
            backlog=128)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])


def metrics_app(node: Node) -> web.Application:
    from aiohttp import web

    from . import metrics

    async def scrape(request: web.Request) -> web.Response:
        per_object = request.path.endswith("/per-object")
        detailed = None
        if request.path.endswith("/detailed"):
            detailed = (request.query.getall("family", []), request.query.get("vhost"))
        return web.Response(body=metrics.render(node, per_object, detailed),
                            headers={"Content-Type": metrics.CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/metrics/per-object", scrape)
    app.router.add_get("/metrics/detailed", scrape)
    return app
