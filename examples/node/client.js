'use strict';
// A small memgrpc client for Node.js: @grpc/grpc-js + @grpc/proto-loader, reading the .proto
// files straight from this repository's protos/ (no code generation step).
//
//   const { MemgrpcClient } = require('./client');
//   const client = new MemgrpcClient('127.0.0.1:50051', { apiKey: process.env.MEMGRPC_API_KEY });
//   const memory = await client.createMemory({ userId: 'alice', content: 'Prefers tea', type: 'preference' });
//   const { results } = await client.searchMemories({ userId: 'alice', query: 'drinks' });
//   for await (const event of client.chat({ userId: 'alice', message: 'What do I drink?' })) { ... }
//   const agent = await client.createAgent({ displayName: 'Ava', systemPrompt: 'You are upbeat.' });
//   for await (const event of client.chat({ userId: 'alice', agentId: agent.id, messages: [...] })) { ... }
//   for await (const event of client.simulate({ agentId: agent.id, userPersona: {...}, config: {...} })) { ... }
//   for await (const event of client.streamRunEvents({ runId, fromIndex: 5 })) { ... }   // resume
//   const run = await client.getRun(runId);
//
// Field names are the proto names in lowerCamelCase (user_id -> userId); enums are their names
// ('MEMORY_TYPE_PREFERENCE'; createMemory also takes the short 'preference'); int64 values are
// numbers; `metadata` (google.protobuf.Struct) goes in and comes out as a plain object.
// Failed calls reject (or, for chat, throw) a MemgrpcError carrying the google.rpc.Status
// details the server sends: ErrorInfo reason, BadRequest field violations, RetryInfo delay.

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'protos');
const PROTO_DIR = path.join(PROTO_ROOT, 'memgrpc', 'v1');

const LOADER_OPTIONS = {
  // proto-loader ships google/protobuf/*.proto itself; memgrpc/v1/*.proto resolve from PROTO_ROOT
  includeDirs: [PROTO_ROOT],
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true, // a oneof's set member is named by the oneof (ChatEvent.event === 'delta')
};

let services = null;

/** Every memgrpc.v1 service found in protos/memgrpc/v1, loaded once. */
function loadServices() {
  if (services === null) {
    const files = fs
      .readdirSync(PROTO_DIR)
      .filter((name) => name.endsWith('.proto'))
      .map((name) => `memgrpc/v1/${name}`);
    const definition = protoLoader.loadSync(files, LOADER_OPTIONS);
    services = grpc.loadPackageDefinition(definition).memgrpc.v1;
  }
  return services;
}

// -- rich errors (google.rpc.Status in the `grpc-status-details-bin` trailer) ------------------
// The few google.rpc messages a client needs, with their real names and field numbers, so the
// type URLs (type.googleapis.com/google.rpc.ErrorInfo) match what the server packs.
const rpcRoot = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
            Duration: { fields: { seconds: { type: 'int64', id: 1 }, nanos: { type: 'int32', id: 2 } } },
          },
        },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: 'int32', id: 1 },
                message: { type: 'string', id: 2 },
                details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 },
              },
            },
            ErrorInfo: {
              fields: {
                reason: { type: 'string', id: 1 },
                domain: { type: 'string', id: 2 },
                metadata: { keyType: 'string', type: 'string', id: 3 },
              },
            },
            RetryInfo: { fields: { retry_delay: { type: 'google.protobuf.Duration', id: 1 } } },
            BadRequest: {
              fields: { field_violations: { rule: 'repeated', type: 'FieldViolation', id: 1 } },
              nested: {
                FieldViolation: {
                  fields: {
                    field: { type: 'string', id: 1 },
                    description: { type: 'string', id: 2 },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
});
const StatusType = rpcRoot.lookupType('google.rpc.Status');
const DETAIL_TYPES = {
  'type.googleapis.com/google.rpc.ErrorInfo': rpcRoot.lookupType('google.rpc.ErrorInfo'),
  'type.googleapis.com/google.rpc.RetryInfo': rpcRoot.lookupType('google.rpc.RetryInfo'),
  'type.googleapis.com/google.rpc.BadRequest': rpcRoot.lookupType('google.rpc.BadRequest'),
};
const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

/** The details of a google.rpc.Status (bytes), decoded: {errorInfo, retryInfo, badRequest}. */
function decodeStatusDetails(bytes) {
  const status = StatusType.toObject(StatusType.decode(bytes), { longs: Number, defaults: true });
  const out = { code: status.code, message: status.message };
  for (const any of status.details) {
    const type = DETAIL_TYPES[any.type_url];
    if (type === undefined) continue;
    const name = type.name.charAt(0).toLowerCase() + type.name.slice(1); // errorInfo, ...
    out[name] = type.toObject(type.decode(any.value), { longs: Number, defaults: true });
  }
  return out;
}

/** A failed memgrpc call: the gRPC status plus the google.rpc details the server attached. */
class MemgrpcError extends Error {
  constructor(err) {
    super(err.details || err.message);
    this.name = 'MemgrpcError';
    this.code = err.code; // a grpc.status number
    this.codeName = CODE_NAMES[err.code] || 'UNKNOWN';
    this.reason = null; // ErrorInfo.reason, e.g. 'MEMORY_NOT_FOUND', 'RATE_LIMITED'
    this.domain = null;
    this.errorMetadata = {};
    this.fieldViolations = []; // BadRequest: [{field, description}]
    this.retryDelayMs = null; // RetryInfo, with RESOURCE_EXHAUSTED / UNAVAILABLE
    this.requestId = null; // x-request-id trailer: quote it when reporting a problem
    this.cause = err;
    const metadata = err.metadata;
    if (metadata) {
      const [requestId] = metadata.get('x-request-id');
      if (requestId !== undefined) this.requestId = String(requestId);
      const [raw] = metadata.get('grpc-status-details-bin');
      if (raw !== undefined) {
        const details = decodeStatusDetails(Buffer.from(raw));
        if (details.errorInfo) {
          this.reason = details.errorInfo.reason;
          this.domain = details.errorInfo.domain;
          this.errorMetadata = details.errorInfo.metadata;
        }
        if (details.badRequest) this.fieldViolations = details.badRequest.field_violations;
        if (details.retryInfo) {
          const d = details.retryInfo.retry_delay;
          this.retryDelayMs = (d.seconds || 0) * 1000 + (d.nanos || 0) / 1e6;
        }
      }
    }
  }
}

function toMemgrpcError(err) {
  return err instanceof MemgrpcError || typeof err?.code !== 'number' ? err : new MemgrpcError(err);
}

// -- google.protobuf.Struct <-> plain objects --------------------------------------------------
function toValue(v) {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}

function toStruct(obj) {
  return { fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, toValue(v)])) };
}

function fromValue(v) {
  switch (v.kind) {
    case 'numberValue':
    case 'stringValue':
    case 'boolValue':
      return v[v.kind];
    case 'listValue':
      return (v.listValue.values || []).map(fromValue);
    case 'structValue':
      return fromStruct(v.structValue);
    default:
      return null;
  }
}

function fromStruct(struct) {
  if (!struct || !struct.fields) return {};
  return Object.fromEntries(Object.entries(struct.fields).map(([k, v]) => [k, fromValue(v)]));
}

function memoryIn(memory) {
  const out = { ...memory };
  if (typeof out.type === 'string' && !out.type.startsWith('MEMORY_TYPE_')) {
    out.type = `MEMORY_TYPE_${out.type.toUpperCase()}`;
  }
  if (out.metadata && !out.metadata.fields) out.metadata = toStruct(out.metadata);
  return out;
}

function memoryOut(memory) {
  return memory ? { ...memory, metadata: fromStruct(memory.metadata) } : memory;
}

// -- the client --------------------------------------------------------------------------------
class MemgrpcClient {
  /**
   * @param {string} address host:port of a memgrpc server
   * @param {object} options apiKey (sent as `x-api-key`), timeoutMs (per unary call, 10 s),
   *   chatTimeoutMs (a whole chat stream, 120 s), runTimeoutMs (a whole simulation run stream,
   *   900 s: the server's default limit on a run), credentials (insecure by default)
   */
  constructor(address, options = {}) {
    const { apiKey, timeoutMs = 10_000, chatTimeoutMs = 120_000, runTimeoutMs = 900_000, credentials } = options;
    if (!apiKey) throw new Error('MemgrpcClient: apiKey is required');
    const v1 = loadServices();
    const creds = credentials || grpc.credentials.createInsecure();
    this._memoryStub = new v1.MemoryService(address, creds);
    // the other stubs share the first one's channel
    const shared = { channelOverride: this._memoryStub.getChannel() };
    this._chatStub = v1.ChatService ? new v1.ChatService(address, creds, shared) : null;
    this._agentStub = v1.AgentService ? new v1.AgentService(address, creds, shared) : null;
    this._simStub = v1.SimulationService ? new v1.SimulationService(address, creds, shared) : null;
    this.apiKey = apiKey;
    this.timeoutMs = timeoutMs;
    this.chatTimeoutMs = chatTimeoutMs;
    this.runTimeoutMs = runTimeoutMs;
  }

  _metadata(extra = {}) {
    const md = new grpc.Metadata();
    md.set('x-api-key', this.apiKey);
    for (const [k, v] of Object.entries(extra)) md.set(k, v);
    return md;
  }

  _unary(stub, method, request, options = {}) {
    const deadline = Date.now() + (options.timeoutMs ?? this.timeoutMs);
    return new Promise((resolve, reject) => {
      stub[method](request, this._metadata(options.metadata), { deadline }, (err, reply) =>
        err ? reject(toMemgrpcError(err)) : resolve(reply),
      );
    });
  }

  /** CreateMemory: `memory` = {userId, content, type?, tags?, metadata?, ...}. */
  async createMemory(memory, options = {}) {
    const request = { memory: memoryIn(memory), requestId: options.requestId || '' };
    return memoryOut(await this._unary(this._memoryStub, 'CreateMemory', request, options));
  }

  /** SearchMemories: {userId, query, limit?, mode?, tags?, ...} -> [{memory, score}]. */
  async searchMemories(request, options = {}) {
    const reply = await this._unary(this._memoryStub, 'SearchMemories', request, options);
    return reply.results.map((r) => ({ memory: memoryOut(r.memory), score: r.score }));
  }

  /** CreateAgent: `agent` = {displayName, systemPrompt?, personality?, capabilities?, metadata?}. */
  async createAgent(agent, options = {}) {
    if (this._agentStub === null) throw new Error('this protos/ has no memgrpc.v1.AgentService');
    const body = { ...agent };
    if (body.metadata && !body.metadata.fields) body.metadata = toStruct(body.metadata);
    const request = { agent: body, requestId: options.requestId || '' };
    const made = await this._unary(this._agentStub, 'CreateAgent', request, options);
    return { ...made, metadata: fromStruct(made.metadata) };
  }

  /**
   * Chat: one streamed turn. An async iterator of ChatEvent objects
   * ({sequence, createTime, event: 'started' | 'context' | 'delta' | 'tool_call' | 'done' |
   * 'error', [event]: ...}). With `agentId` the agent speaks (its prompt, personality, mood);
   * `messages` ([{role, content}], the last one the user's) replaces `message`;
   * `toolDefinitions` ([{name, description, parameters}], parameters a plain JSON Schema
   * object) lets the model call tools: each call arrives as a `tool_call` event
   * ({id, name, arguments: JSON text}). Leaving the loop early (break / return / throw), or
   * aborting `options.signal`, cancels the call, which stops generation on the server.
   */
  async *chat(request, options = {}) {
    if (this._chatStub === null) throw new Error('this protos/ has no memgrpc.v1.ChatService');
    const deadline = Date.now() + (options.timeoutMs ?? this.chatTimeoutMs);
    const body = { ...request };
    if (body.toolDefinitions) {
      body.toolDefinitions = body.toolDefinitions.map((t) =>
        t.parameters && !t.parameters.fields ? { ...t, parameters: toStruct(t.parameters) } : t,
      );
    }
    const call = this._chatStub.Chat(body, this._metadata(options.metadata), { deadline });
    const onAbort = () => call.cancel();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const event of call) {
        if (event.context) {
          event.context.memories = event.context.memories.map((r) => ({
            memory: memoryOut(r.memory),
            score: r.score,
          }));
        }
        yield event;
      }
    } catch (err) {
      throw toMemgrpcError(err);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      call.cancel(); // a no-op once the stream has ended
    }
  }

  _sim() {
    if (this._simStub === null) throw new Error('this protos/ has no memgrpc.v1.SimulationService');
    return this._simStub;
  }

  /**
   * Simulate: starts a SIMULATION run (a scripted persona, or the LLM when one is configured,
   * talks to the agent through the real chat turn) and streams its events to the terminal one.
   * `request` = {agentId, userPersona: {name, background, personalityTraits?,
   * communicationStyle?}, config?: {maxSessions?, maxTurnsPerSession?, advanceTime?: {seconds}}}.
   * Yields RunEvent objects ({runId, index, type, message, data: a plain object, time}); see
   * streamRunEvents for heartbeats. The run lives on the server, not in the stream: leaving the
   * loop early only stops watching, and streamRunEvents({runId, fromIndex}) picks it up again.
   */
  simulate(request, options = {}) {
    return this._runEvents('Simulate', request, options);
  }

  /**
   * StreamRunEvents: a run's stored events from `fromIndex` (0 = the start; resume with the
   * last index seen + 1), then its new ones as they happen, until the terminal event
   * (run_completed, run_failed, run_cancelled). Indexes have no gaps. The server's
   * `heartbeat` events (not stored, sent while nothing happens) are dropped unless
   * `options.heartbeats` is true, so a consumer can rely on index === previous index + 1.
   * A `fromIndex` past a finished run's last event rejects with OUT_OF_RANGE.
   */
  streamRunEvents(request, options = {}) {
    return this._runEvents('StreamRunEvents', request, options);
  }

  async *_runEvents(method, request, options) {
    const stub = this._sim();
    const deadline = Date.now() + (options.timeoutMs ?? this.runTimeoutMs);
    const call = stub[method](request, this._metadata(options.metadata), { deadline });
    const onAbort = () => call.cancel();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const event of call) {
        if (event.type === 'heartbeat' && !options.heartbeats) continue;
        yield { ...event, data: fromStruct(event.data) };
      }
    } catch (err) {
      throw toMemgrpcError(err);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      call.cancel(); // a no-op once the stream has ended
    }
  }

  /** GetRun: the run's status ('RUN_STATUS_COMPLETED', ...), progress and eventCount. */
  async getRun(id, options = {}) {
    const run = await this._unary(this._sim(), 'GetRun', { id }, options);
    delete run._score; // proto-loader's name for the proto3 `optional`; `score` is set or absent
    return run;
  }

  close() {
    this._memoryStub.close();
  }
}

module.exports = {
  MemgrpcClient,
  MemgrpcError,
  decodeStatusDetails,
  loadServices,
  toStruct,
  fromStruct,
  grpc,
};
