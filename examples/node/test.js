'use strict';
// Runs against a live memgrpc server (node's built-in test runner, no other test deps):
//   MEMGRPC_ADDR=127.0.0.1:50051 MEMGRPC_API_KEY=mgk_... node --test test.js
// The key needs the read and write scopes. tests/test_node_client.py runs this under pytest
// against a server it starts on loopback.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { MemgrpcClient, MemgrpcError, grpc } = require('./client');

const ADDR = process.env.MEMGRPC_ADDR;
const API_KEY = process.env.MEMGRPC_API_KEY;
const missing = !ADDR || !API_KEY ? 'set MEMGRPC_ADDR and MEMGRPC_API_KEY to a running server' : false;

const userId = `node-${crypto.randomUUID()}`;
let client;
let created;

test.before(() => {
  if (!missing) client = new MemgrpcClient(ADDR, { apiKey: API_KEY });
});
test.after(() => client?.close());

test('createMemory stores a memory', { skip: missing }, async () => {
  created = await client.createMemory({
    userId,
    content: "The user's dog is named Biscuit",
    type: 'fact',
    tags: ['pets'],
    metadata: { source: 'node-test', weight: 2 },
  });
  assert.match(created.id, /^mem_/);
  assert.equal(created.userId, userId);
  assert.equal(created.type, 'MEMORY_TYPE_FACT');
  assert.deepEqual(created.metadata, { source: 'node-test', weight: 2 });
});

test('searchMemories finds it', { skip: missing }, async () => {
  assert.ok(created, 'createMemory ran first');
  const results = await client.searchMemories({ userId, query: 'what is the name of my dog?', limit: 5 });
  const hit = results.find((r) => r.memory.id === created.id);
  assert.ok(hit, `the new memory is among ${JSON.stringify(results.map((r) => r.memory.id))}`);
  assert.ok(hit.score > 0 && hit.score <= 1);
  assert.deepEqual(hit.memory.tags, ['pets']);
});

test('a bad request is INVALID_ARGUMENT with BadRequest field violations', { skip: missing }, async () => {
  await assert.rejects(client.createMemory({ userId, content: '' }), (err) => {
    assert.ok(err instanceof MemgrpcError, String(err));
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(err.codeName, 'INVALID_ARGUMENT');
    assert.equal(err.domain, 'memgrpc');
    assert.match(err.reason, /^[A-Z_]+$/);
    assert.ok(
      err.fieldViolations.some((v) => v.field === 'memory.content' && v.description),
      JSON.stringify(err.fieldViolations),
    );
    assert.ok(err.requestId, 'the x-request-id trailer is surfaced');
    return true;
  });
});

test('chat streams started, context, deltas and done', { skip: missing }, async (t) => {
  const events = [];
  try {
    for await (const event of client.chat({ userId, message: "What is my dog's name?" })) {
      events.push(event);
    }
  } catch (err) {
    if (err instanceof MemgrpcError && err.code === grpc.status.UNIMPLEMENTED) {
      t.skip('ChatService is not served by this server yet (UNIMPLEMENTED)');
      return;
    }
    throw err;
  }
  const kinds = events.map((e) => e.event);
  assert.equal(kinds[0], 'started', kinds.join(','));
  assert.equal(kinds.at(-1), 'done', kinds.join(','));
  assert.ok(kinds.includes('context'), kinds.join(','));
  assert.ok(kinds.includes('delta'), kinds.join(','));
  assert.deepEqual(
    events.map((e) => e.sequence),
    events.map((_, i) => i + 1),
  );

  const started = events[0].started;
  assert.match(started.userMessageId, /^msg_/);
  assert.match(started.sessionId, /^ses_/);
  const context = events.find((e) => e.event === 'context').context;
  assert.ok(context.memories.some((m) => m.memory.id === created.id), 'the dog memory was recalled');
  const reply = events
    .filter((e) => e.event === 'delta')
    .map((e) => e.delta.text)
    .join('');
  assert.match(reply, /Biscuit/);
  const done = events.at(-1).done;
  assert.match(done.assistantMessageId, /^msg_/);
  assert.ok(done.usage.completionTokens > 0);
});

test('agent chat: the agent speaks from the Sonzai-style messages; bad tools are field violations', { skip: missing }, async () => {
  const agent = await client.createAgent({ displayName: 'Ava', systemPrompt: 'You are upbeat.' });
  assert.match(agent.id, /^agt_/);
  const tools = [{ name: 'lookup', description: 'Look a word up', parameters: { type: 'object', properties: { word: { type: 'string' } } } }];
  const events = [];
  for await (const event of client.chat({
    userId,
    agentId: agent.id,
    messages: [
      { role: 'user', content: 'My cat is called Miso.' },
      { role: 'assistant', content: 'Cute!' },
      { role: 'user', content: 'What is my cat called?' },
    ],
    toolDefinitions: tools,
  })) {
    events.push(event);
  }
  const kinds = events.map((e) => e.event);
  assert.equal(kinds[0], 'started', kinds.join(','));
  assert.equal(kinds.at(-1), 'done', kinds.join(','));
  // the built-in responder never calls tools; an OpenAI-compatible model's calls are tool_call events
  assert.ok(!kinds.includes('tool_call'), kinds.join(','));
  const reply = events.filter((e) => e.event === 'delta').map((e) => e.delta.text).join('');
  assert.match(reply, /Miso/);

  const bad = client.chat({ userId, agentId: agent.id, message: 'hi', toolDefinitions: [{ name: 'x', parameters: { type: 'string' } }] });
  await assert.rejects(
    (async () => {
      for await (const _ of bad); // eslint-disable-line no-unused-vars
    })(),
    (err) => {
      assert.ok(err instanceof MemgrpcError, String(err));
      assert.equal(err.codeName, 'INVALID_ARGUMENT');
      assert.ok(err.fieldViolations.some((v) => v.field === 'tool_definitions[0].parameters'), JSON.stringify(err.fieldViolations));
      return true;
    },
  );
});

const ALEX = {
  name: 'Alex',
  background: 'Alex works as a nurse in Leeds. She has a dog named Pepper.',
  personalityTraits: ['curious'],
  communicationStyle: 'casual',
};

async function collect(stream) {
  const out = [];
  for await (const event of stream) out.push(event);
  return out;
}

const brief = (events) => events.map((e) => [e.index, e.type, e.message]);

test('simulate streams a run to its terminal event; streamRunEvents resumes from any index; getRun', { skip: missing }, async () => {
  const agent = await client.createAgent({ displayName: 'Sim' });
  const events = await collect(
    client.simulate({ agentId: agent.id, userPersona: ALEX, config: { maxSessions: 2, maxTurnsPerSession: 2 } }),
  );
  const n = events.length;
  assert.deepEqual(events.map((e) => e.index), [...Array(n).keys()], 'indexes 0..n-1, no gaps');
  const types = events.map((e) => e.type);
  assert.equal(types[0], 'run_started', types.join(','));
  assert.equal(types.at(-1), 'run_completed', types.join(','));
  assert.ok(!types.includes('heartbeat'), 'heartbeats are dropped by default');
  assert.equal(types.filter((t) => t === 'session_started').length, 2, types.join(','));
  assert.equal(types.filter((t) => t === 'user_message').length, 4, types.join(','));
  assert.equal(types.filter((t) => t === 'agent_message').length, 4, types.join(','));
  const runId = events[0].runId;
  assert.match(runId, /^run_/);
  assert.ok(events.every((e) => e.runId === runId));
  assert.ok(events.some((e) => e.type === 'user_message' && /nurse/.test(e.message)), 'the persona tells its facts');
  assert.ok(events.every((e) => e.data !== null && typeof e.data === 'object' && !('fields' in e.data)), 'data is a plain object');

  for (const k of [0, Math.floor(n / 2), n - 1]) {
    const resumed = await collect(client.streamRunEvents({ runId, fromIndex: k }));
    assert.deepEqual(brief(resumed), brief(events.slice(k)), `resumed from ${k}`);
    assert.deepEqual(resumed.map((e) => e.data), events.slice(k).map((e) => e.data));
  }

  const run = await client.getRun(runId);
  assert.equal(run.id, runId);
  assert.equal(run.status, 'RUN_STATUS_COMPLETED');
  assert.equal(run.kind, 'RUN_KIND_SIMULATION');
  assert.equal(run.agentId, agent.id);
  assert.equal(run.userPersona.name, 'Alex');
  assert.deepEqual([run.sessionsDone, run.turnsDone, run.eventCount], [2, 4, n]);
  assert.equal(run.score, undefined, 'a SIMULATION is not scored');

  await assert.rejects(collect(client.streamRunEvents({ runId, fromIndex: n })), (err) => {
    assert.ok(err instanceof MemgrpcError, String(err));
    assert.equal(err.codeName, 'OUT_OF_RANGE');
    assert.equal(err.reason, 'RUN_EVENT_INDEX_OUT_OF_RANGE');
    return true;
  });
  await assert.rejects(client.getRun('run_missing'), (err) => err instanceof MemgrpcError && err.codeName === 'NOT_FOUND');
});

test('a client that leaves the stream resumes the run where it left off', { skip: missing }, async () => {
  const agent = await client.createAgent({ displayName: 'Sim' });
  const seen = [];
  for await (const e of client.simulate({ agentId: agent.id, userPersona: ALEX, config: { maxSessions: 2, maxTurnsPerSession: 2 } })) {
    seen.push(e);
    if (e.type === 'agent_message') break; // cancels the stream, not the run
  }
  const { runId } = seen[0];
  const rest = await collect(client.streamRunEvents({ runId, fromIndex: seen.at(-1).index + 1 }));
  const all = [...seen, ...rest];
  assert.deepEqual(all.map((e) => e.index), [...Array(all.length).keys()]);
  assert.equal(all.at(-1).type, 'run_completed');
  assert.deepEqual(brief(all), brief(await collect(client.streamRunEvents({ runId }))));
  assert.equal((await client.getRun(runId)).status, 'RUN_STATUS_COMPLETED');
});
