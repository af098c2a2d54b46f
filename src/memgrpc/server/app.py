"""Builds and runs the whole server: store, embedder, services, interceptors, health, reflection.

Shutdown order is what makes "acknowledged = durable" hold at exit: health goes NOT_SERVING so
load balancers stop routing, in-flight RPCs drain within the grace period, and only then are the
background maintainer, the store writers (flushed) and the embedder closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from memgrpc.api.admin import AdminServicer
from memgrpc.api.agents import AgentServicer
from memgrpc.api.chat import ChatServicer
from memgrpc.api.conflicts import ConflictServicer
from memgrpc.api.context import ContextServicer
from memgrpc.api.memory import MemoryServicer
from memgrpc.api.sessions import SessionServicer
from memgrpc.api.simulation import SimulationServicer
from memgrpc.api.users import UserServicer
from memgrpc.config import BYOK_MODELS, ServerConfig, decode_master_key
from memgrpc.core.access import AdminService, Authenticator
from memgrpc.core.agents import AgentService, TurnHook
from memgrpc.core.agents.engine import (
    ContextEngine,
    Diary,
    EngineLlm,
    Notifications,
    NotificationSweeper,
)
from memgrpc.core.agents.instances import InstanceService
from memgrpc.core.agents.memory import AgentMemory
from memgrpc.core.agents.states import StateService
from memgrpc.core.chat.background import BackgroundChats
from memgrpc.core.chat.context import ContextService, SessionMessages
from memgrpc.core.chat.loop import SessionLoop
from memgrpc.core.chat.replay import ChatReplays
from memgrpc.core.chat.turn import ChatService
from memgrpc.core.conversation.jobs import AutoProcessor, JobRunner
from memgrpc.core.conversation.messages import MessageService
from memgrpc.core.conversation.purge import UserData
from memgrpc.core.conversation.session_store import SessionStore
from memgrpc.core.conversation.sessions import SessionService
from memgrpc.core.conversation.users import UserService
from memgrpc.core.intelligence.actions import Actions, session_actions
from memgrpc.core.intelligence.conflicts import ConflictService
from memgrpc.core.intelligence.extract import (
    LlmExtractor,
    RulesExtractor,
    canonical_value,
    extract_profile,
)
from memgrpc.core.intelligence.processing import default_steps
from memgrpc.core.intelligence.profiles import Profiles
from memgrpc.core.intelligence.reconcile import Reconciler
from memgrpc.core.intelligence.step import ExtractFacts
from memgrpc.core.kernel.idempotency import Idempotency
from memgrpc.core.memory.changes import ChangeLog, WatchConfig
from memgrpc.core.memory.service import MemoryService
from memgrpc.core.providers import (
    MASTER_KEY_FILE,
    ActiveKey,
    ProjectProviders,
    ProviderKeys,
    Sealer,
    load_or_create,
)
from memgrpc.core.simulation import EventLog, Limits, RunService, TemplateService
from memgrpc.embed import BatchingEmbedder, Embedder, load_embedder
from memgrpc.embed.shared import SharingEmbedder
from memgrpc.llm import LLMConfig, OpenAIProvider, Provider, Providers, build_providers, check_key
from memgrpc.server import ratelimit, reflection, tls
from memgrpc.server.interceptors import interceptors
from memgrpc.server.telemetry import Telemetry, require_sdk
from memgrpc.store.db import Store, StoreConfig
from memgrpc.store.keys import KeyStore
from memgrpc.store.maintenance import Maintainer, MaintenanceConfig
from memgrpc.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    agents_pb2,
    agents_pb2_grpc,
    chat_pb2,
    chat_pb2_grpc,
    conflicts_pb2,
    conflicts_pb2_grpc,
    context_pb2,
    context_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
    simulation_pb2,
    simulation_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)

log = structlog.get_logger(__name__)

KEY_FILE = "admin.key"
SERVICE_NAMES = (
    memory_pb2.DESCRIPTOR.services_by_name["MemoryService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    users_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
    sessions_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
    context_pb2.DESCRIPTOR.services_by_name["ContextService"].full_name,
    chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
    conflicts_pb2.DESCRIPTOR.services_by_name["ConflictService"].full_name,
    agents_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    simulation_pb2.DESCRIPTOR.services_by_name["SimulationService"].full_name,
)


def grpc_options(config: ServerConfig) -> list[tuple[str, int]]:
    """Message limits and keepalive: detect dead peers, tolerate clients pinging every 10 s."""
    return [
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 2),
        # two servers must never silently share a port
        ("grpc.so_reuseport", 0),
    ]


def _profile_of(text: str) -> tuple[str, str] | None:
    fact = extract_profile(text)
    return (fact.slot, fact.value) if fact is not None and fact.slot else None


def key_file_path(config: ServerConfig) -> Path:
    """`<data>/admin.key` for a local data dir, `./admin.key` for object storage."""
    local = config.local_data_path
    return Path(local) / KEY_FILE if local is not None else Path(KEY_FILE)


def master_key(config: ServerConfig) -> bytes:
    """MEMGRPC_MASTER_KEY, else `master.key` next to admin.key (generated on first start)."""
    if config.master_key is not None:
        return decode_master_key(config.master_key)
    return load_or_create(key_file_path(config).with_name(MASTER_KEY_FILE))


def build_provider_keys(config: ServerConfig, store: Store, sealer: Sealer) -> ProviderKeys:
    async def check(provider: str, base_url: str, api_key: str) -> None:
        await check_key(
            base_url, api_key, provider=provider, timeout_s=min(config.openai_timeout_s, 15.0)
        )

    return ProviderKeys(store, sealer, check, config.byok_base_urls())


def build_project_providers(config: ServerConfig, keys: ProviderKeys) -> ProjectProviders:
    def provider(k: ActiveKey) -> Provider:
        model = k.default_model or BYOK_MODELS.get(k.provider, "")
        return OpenAIProvider(
            k.base_url, k.api_key, model, config.openai_timeout_s, name=k.provider
        )

    return ProjectProviders(keys, provider)


@dataclass
class Conversations:
    """Users, sessions, messages and their processing jobs (plus their background loops)."""

    sessions: SessionService
    messages: MessageService
    jobs: JobRunner
    sweeper: AutoProcessor
    users: UserService
    idempotency: Idempotency
    session_store: SessionStore
    conflicts: ConflictService

    @classmethod
    def build(
        cls,
        config: ServerConfig,
        store: Store,
        memories: MemoryService,
        embedder: BatchingEmbedder,
        extract: ExtractFacts | None,
        conflicts: ConflictService,
    ) -> Conversations:
        idempotency = Idempotency(store)
        session_store = SessionStore(store)
        messages = MessageService(store, memories, session_store)
        steps = [*default_steps(embedder), *([extract] if extract is not None else [])]
        jobs = JobRunner(store, session_store, messages, memories, steps)
        data = UserData(
            store,
            memories.users,
            jobs,
            idempotency,
            memories.cache,
            session_store,
            messages,
            memories.changes,
        )
        return cls(
            sessions=SessionService(store, session_store, messages, jobs, memories),
            messages=messages,
            jobs=jobs,
            sweeper=AutoProcessor(session_store, jobs, stale_after_s=config.job_stale_after_s),
            users=UserService(store, data, messages),
            idempotency=idempotency,
            session_store=session_store,
            conflicts=conflicts,
        )


@dataclass
class Chats:
    """Chat turns (streamed and background), the context they (and GetContext) assemble, and
    the LLM providers they run on."""

    context: ContextService
    service: ChatService
    background: BackgroundChats
    replays: ChatReplays
    providers: Providers
    own: ProjectProviders  # a project's BYOK provider (its chat, extraction, context engine)
    loop: SessionLoop

    @classmethod
    def build(
        cls,
        config: ServerConfig,
        store: Store,
        memories: MemoryService,
        conv: Conversations,
        embedder: BatchingEmbedder,
        providers: Providers,
        profiles: Profiles,
        own: ProjectProviders,
        agents: AgentService,
    ) -> Chats:
        context = ContextService(
            memories, SessionMessages(conv.sessions, conv.messages), embedder, profiles
        )
        service = ChatService(
            conv.sessions,
            conv.messages,
            context,
            providers,
            embedder,
            own_provider=own.provider_for,
            agents=agents,
            extraction=conv.jobs,
            async_recall_deadline_s=config.async_recall_deadline_ms / 1000,
        )
        background = BackgroundChats(store, service, memories)
        # chat's recorded turns (async and replayable) go with their session
        conv.sessions.on_delete(background.delete_session)
        replays = ChatReplays(store, service, conv.sessions, memories)
        loop = SessionLoop(conv.sessions, conv.messages, conv.jobs, context)
        return cls(context, service, background, replays, providers, own, loop)

    def set_turn_hook(self, hook: TurnHook | None) -> None:
        """Plug the context engine in: chat turns and SubmitTurn tell it each turn (mood)."""
        self.service.hook = hook
        self.loop.hook = hook

    async def stop(self) -> None:
        """Running turns end (or are cancelled, storing what they said) before the store shuts."""
        await self.background.stop()
        await self.service.stop()
        await self.providers.aclose()
        await self.own.aclose()


def build_extract_step(
    config: ServerConfig, providers: Providers, reconciler: Reconciler, own: ProjectProviders
) -> ExtractFacts | None:
    """The extraction step with the extractor MEMGRPC_EXTRACTOR names (config has checked that
    llm has its endpoint) and MEMGRPC_EXTRACTOR_FALLBACK's fallback; a project with an active
    BYOK key extracts with its LLM (rules or the fallback when that fails)."""
    if config.extractor == "none":
        return None

    async def own_extractor(project_id: str) -> LlmExtractor | None:
        provider = await own.provider_for(project_id)
        return LlmExtractor(provider, provider.default_model) if provider is not None else None

    rules = RulesExtractor()
    if config.extractor != "llm":
        return ExtractFacts(rules, reconciler, actions=session_actions, own_extractor=own_extractor)
    provider = providers.get("openai")
    if provider is None:
        raise ValueError("the llm extractor needs the openai provider")
    fallback = rules if config.extractor_fallback == "rules" else None
    return ExtractFacts(
        LlmExtractor(provider, config.openai_model or ""),
        reconciler,
        fallback=fallback,
        actions=session_actions,
        own_extractor=own_extractor,
    )


@dataclass
class Intelligence:
    """What processing derives from conversations: extraction, reconciliation, profiles."""

    reconciler: Reconciler
    extract: ExtractFacts | None  # None: MEMGRPC_EXTRACTOR=none
    profiles: Profiles


@dataclass
class AgentEngine:
    """The agents' context engine: mood and relationship (moved by every stored turn), the
    diary (a processing step), the notifications and their background sweep."""

    engine: ContextEngine
    diary: Diary
    notifications: Notifications
    sweeper: NotificationSweeper

    @classmethod
    def build(
        cls,
        config: ServerConfig,
        store: Store,
        memories: MemoryService,
        providers: Providers,
        agents: AgentService,
        conversations: Conversations,
        own: ProjectProviders,
    ) -> AgentEngine:
        """With MEMGRPC_EXTRACTOR=llm the engine asks the same OpenAI-compatible model; a
        project with its own provider key (BYOK) is asked through that key, on any server."""
        provider = providers.get("openai") if config.extractor == "llm" else None
        llm = EngineLlm(provider, config.openai_model or "", own=own.provider_for)
        engine = ContextEngine(
            store,
            memories,
            llm=llm,
            check_scope=agents.check_scope,
            inactivity=timedelta(days=config.inactivity_days),
        )
        diary = Diary(store, engine, llm=llm)
        notifications = Notifications(store, engine, llm=llm)
        conversations.messages.observers.append(engine.observe_turn)
        conversations.jobs.steps.append(diary)  # after extraction: the day's facts exist
        sweeper = NotificationSweeper(engine, notifications, interval_s=config.notify_interval_s)
        return cls(engine, diary, notifications, sweeper)


@dataclass
class App:
    """Everything one server process holds; tests reach in through `RunningServer.app`."""

    config: ServerConfig
    store: Store
    embedder: BatchingEmbedder
    keys: KeyStore
    authenticator: Authenticator
    admin: AdminService
    memories: MemoryService
    maintainer: Maintainer
    conversations: Conversations
    chat: Chats
    intelligence: Intelligence
    agents: AgentService
    states: StateService
    provider_keys: ProviderKeys
    agent_engine: AgentEngine
    instances: InstanceService
    agent_memory: AgentMemory
    templates: TemplateService
    runs: RunService
    health: HealthServicer = field(default_factory=HealthServicer)
    telemetry: Telemetry | None = None  # metrics / tracing (server/telemetry.py), when enabled


class RunningServer:
    def __init__(self, server: grpc.aio.Server, app: App, port: int) -> None:
        self.server = server
        self.app = app
        self.port = port
        self.address = f"{app.config.host}:{port}"
        self._stop_lock = asyncio.Lock()
        self._done = asyncio.Event()

    async def stop(self, grace: float | None = None) -> None:
        """Graceful: NOT_SERVING, drain for `grace` s (default from config), then close."""
        async with self._stop_lock:
            if self._done.is_set():
                return
            grace = self.app.config.grace_period_s if grace is None else grace
            log.info("shutdown_started", grace_s=grace)
            await self.app.health.enter_graceful_shutdown()
            # runs end first (FAILED, "server shutdown"), so the streams following them end too
            await self.app.runs.stop()
            await self.server.stop(grace)
            await _close(self.app)
            self._done.set()
            log.info("shutdown_complete")

    async def force(self) -> None:
        """Cancel in-flight RPCs now; a running `stop` then finishes its clean-up."""
        await self.server.stop(0)

    async def wait(self) -> None:
        """Until `stop` has completed."""
        await self._done.wait()


async def _close(app: App) -> None:
    if app.telemetry is not None:
        await app.telemetry.aclose()
    await app.runs.stop()
    await app.chat.stop()
    await app.maintainer.stop()
    await app.conversations.sweeper.stop()
    await app.agent_engine.sweeper.stop()
    await app.conversations.jobs.stop()
    await app.memories.users.stop()  # flushes pending last_active_time
    await app.conversations.session_store.stop()  # and sessions' counters
    await app.store.close()  # flushes every writer's queue
    await app.embedder.aclose()


async def _build(config: ServerConfig, embedder: Embedder | None) -> App:
    if embedder is None:
        embedder = await asyncio.to_thread(
            load_embedder,
            config.embedder,
            url=config.embed_url,
            api_key=config.embed_api_key,
            model=config.embed_model,
        )
    inner = embedder
    dim = await asyncio.to_thread(lambda: inner.dim)  # a remote endpoint may have to be asked
    store = Store(
        StoreConfig(
            uri=config.data,
            dim=dim,
            storage_options=dict(config.storage_options),
            read_consistency_s=config.read_consistency_s,
            index_cache_mb=config.index_cache_mb,
            metadata_cache_mb=config.metadata_cache_mb,
            prewarm_indexes=config.prewarm_indexes,
        )
    )
    await store.open()
    batching = SharingEmbedder(inner)  # a BatchingEmbedder; chat turns embed their text once
    keys = KeyStore(store)
    authenticator = Authenticator(keys, ttl_s=config.read_consistency_s)
    maintainer = Maintainer(
        store,
        MaintenanceConfig(
            interval_s=config.maintenance_interval_s,
            change_retention_s=config.change_retention_s,
        ),
    )
    watch = WatchConfig(
        poll_s=config.watch_poll_s,
        heartbeat_s=config.watch_heartbeat_s,
        buffer=config.watch_buffer,
        stall_s=config.watch_stall_s,
    )
    memories = MemoryService(
        store,
        batching,
        cache_rows=config.recall_cache_rows,
        changes=ChangeLog(store, watch),
    )
    providers = build_providers(
        LLMConfig(
            default=config.chat_provider,
            openai_base_url=config.openai_base_url,
            openai_api_key=config.openai_api_key,
            openai_model=config.openai_model,
            openai_timeout_s=config.openai_timeout_s,
        )
    )
    provider_keys = build_provider_keys(config, store, Sealer(master_key(config)))
    own = build_project_providers(config, provider_keys)
    conflicts = ConflictService(store, memories)
    reconciler = Reconciler(memories, conflicts)
    extract = build_extract_step(config, providers, reconciler, own)
    conversations = Conversations.build(config, store, memories, batching, extract, conflicts)
    agents = AgentService(store)

    def forget(project_id: str, user_id: str) -> None:
        """Caches of rows an agent purge deleted behind them ("" = every user's)."""
        memories.cache.forget(project_id, user_id)
        conversations.session_store.forget_user(project_id, user_id)
        conversations.messages.forget_user(project_id, user_id)

    instances = InstanceService(store, agents, forget)
    intel = Intelligence(
        reconciler,
        extract,
        Profiles(reconciler, canonical_value, _profile_of, conversations.users.get),
    )
    agent_engine = AgentEngine.build(config, store, memories, providers, agents, conversations, own)
    chats = Chats.build(
        config, store, memories, conversations, batching, providers, intel.profiles, own, agents
    )
    templates = TemplateService(store)
    app = App(
        config=config,
        store=store,
        embedder=batching,
        keys=keys,
        authenticator=authenticator,
        admin=AdminService(keys, authenticator, memories.categories),
        memories=memories,
        maintainer=maintainer,
        conversations=conversations,
        chat=chats,
        provider_keys=provider_keys,
        intelligence=intel,
        agents=agents,
        states=StateService(store, agents.check_scope),
        agent_engine=agent_engine,
        instances=instances,
        agent_memory=AgentMemory(memories, agents),
        templates=templates,
        runs=RunService(
            store,
            EventLog(store, heartbeat_s=config.sim_heartbeat_s),
            templates,
            conversations.sessions,
            chats.service,
            conversations.jobs,
            providers,
            agents.check_scope,
            conversations.users.delete,
            Limits(config.sim_max_runs, config.sim_max_run_s, config.sim_lease_s),
            llm_model=config.openai_model or "",
        ),
    )
    conversations.sessions.check_scope_with(agents.check_scope)
    memories.check_scope_with(agents.check_scope)
    agents.purge_with(app.runs.purge_agent)  # runs first: their sessions are the agent's too
    agents.purge_with(instances.purge_agent)
    app.chat.set_turn_hook(agent_engine.engine)  # chat turns and SubmitTurn move the mood
    try:
        await app.admin.bootstrap(config.admin_key, key_file_path(config))
        await app.runs.recover()  # runs a dead server left RUNNING end FAILED
    except BaseException:
        await _close(app)
        raise
    return app


async def start(
    config: ServerConfig, *, embedder: Embedder | None = None, tracer_provider: Any = None
) -> RunningServer:
    """Open everything and start serving on `config.addr` (port 0 = any free port).

    `embedder` lets several servers in one process (tests) share a loaded model; it is wrapped
    in a BatchingEmbedder of this server and not closed by it. `tracer_provider` (tests) is
    used instead of an OTLP exporter when tracing is on.
    """
    if tracer_provider is None:
        require_sdk(config)  # before the slow part: a missing `otel` extra fails at once
    app = await _build(config, embedder)
    try:
        app.telemetry = Telemetry.create(
            config,
            app.store,
            app.embedder,
            app.maintainer,
            app.memories.cache,
            tracer_provider=tracer_provider,
        )
        server = grpc.aio.server(
            interceptors=[
                *app.telemetry.interceptors(),  # outermost: sees every call's final status
                *interceptors(app.authenticator, ratelimit.from_config(config)),
            ],
            options=grpc_options(config),
        )
        memory_pb2_grpc.add_MemoryServiceServicer_to_server(
            MemoryServicer(app.memories, app.conversations.idempotency), server
        )
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminServicer(app.admin, Idempotency(app.store), provider_keys=app.provider_keys),
            server,
        )
        conv = app.conversations
        users_pb2_grpc.add_UserServiceServicer_to_server(
            UserServicer(
                conv.users,
                conv.idempotency,
                actions=Actions(app.memories, conv.session_store),
                profiles=app.intelligence.profiles,
            ),
            server,
        )
        sessions_pb2_grpc.add_SessionServiceServicer_to_server(
            SessionServicer(
                conv.sessions, conv.messages, conv.jobs, conv.idempotency, loop=app.chat.loop
            ),
            server,
        )
        context_pb2_grpc.add_ContextServiceServicer_to_server(
            ContextServicer(app.chat.context),
            server,
        )
        chat_pb2_grpc.add_ChatServiceServicer_to_server(
            ChatServicer(app.chat.service, app.chat.background, app.chat.replays, conv.idempotency),
            server,
        )
        conflicts_pb2_grpc.add_ConflictServiceServicer_to_server(
            ConflictServicer(conv.conflicts, conv.idempotency), server
        )
        agents_pb2_grpc.add_AgentServiceServicer_to_server(
            AgentServicer(
                app.agents,
                conv.idempotency,
                states=app.states,
                engine=app.agent_engine.engine,
                diary=app.agent_engine.diary,
                notifications=app.agent_engine.notifications,
                instances=app.instances,
                agent_memory=app.agent_memory,
            ),
            server,
        )
        simulation_pb2_grpc.add_SimulationServiceServicer_to_server(
            SimulationServicer(app.templates, app.runs, app.agents.check_scope, conv.idempotency),
            server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(app.health, server)
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        reflection.enable(server, (*SERVICE_NAMES, health_name))
        port = tls.bind(server, config)
        if port == 0:
            raise OSError(f"could not bind {config.addr}")
        await server.start()
        await app.telemetry.start()
        for name in ("", *SERVICE_NAMES):
            await app.health.set(name, health_pb2.HealthCheckResponse.SERVING)
    except BaseException:
        await _close(app)
        raise
    running = RunningServer(server, app, port)
    app.maintainer.start()
    app.memories.users.start()
    app.conversations.sweeper.start()
    app.agent_engine.sweeper.start()
    log.info(
        "server_started",
        address=running.address,
        port=port,
        embedder=app.embedder.model_id,
        tls=tls.mode(config),
        loop=type(asyncio.get_running_loop()).__module__.partition(".")[0],  # asyncio or uvloop
        config=config.redacted(),
    )
    return running


async def serve(config: ServerConfig) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully; a second signal cancels in-flight RPCs."""
    running = await start(config)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    forcing: set[asyncio.Task[None]] = set()

    def on_signal(sig: signal.Signals) -> None:
        if not stopping.is_set():
            log.info("signal_received", signal=sig.name)
            stopping.set()
            return
        log.warning("signal_received_again", signal=sig.name, action="cancelling in-flight RPCs")
        task = loop.create_task(running.force())
        forcing.add(task)
        task.add_done_callback(forcing.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await stopping.wait()
        await running.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
