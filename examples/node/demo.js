'use strict';
// A walk-through of the Node client against a running server:
//   MEMGRPC_ADDR=127.0.0.1:50051 MEMGRPC_API_KEY=$(cat ../../data/admin.key) node demo.js

const { MemgrpcClient, MemgrpcError, grpc } = require('./client');

async function main() {
  const address = process.env.MEMGRPC_ADDR || '127.0.0.1:50051';
  const apiKey = process.env.MEMGRPC_API_KEY;
  if (!apiKey) {
    console.error('set MEMGRPC_API_KEY (e.g. the contents of ./data/admin.key)');
    process.exit(2);
  }
  const client = new MemgrpcClient(address, { apiKey });
  const userId = `demo-${Date.now()}`;
  try {
    console.log(`1. store two memories for ${userId}`);
    for (const content of ["The user's dog is named Biscuit", 'The user prefers tea over coffee']) {
      const m = await client.createMemory({ userId, content, type: 'fact', tags: ['demo'] });
      console.log(`   ${m.id}  ${m.content}`);
    }

    console.log('\n2. search: "what pet do I have?"');
    for (const { memory, score } of await client.searchMemories({ userId, query: 'what pet do I have?' })) {
      console.log(`   ${score.toFixed(3)}  ${memory.content}`);
    }

    console.log('\n3. a bad request comes back with its details decoded');
    try {
      await client.createMemory({ userId, content: '' });
    } catch (err) {
      if (!(err instanceof MemgrpcError)) throw err;
      console.log(`   ${err.codeName} reason=${err.reason} request_id=${err.requestId}`);
      for (const v of err.fieldViolations) console.log(`   field ${v.field}: ${v.description}`);
    }

    console.log('\n4. chat, streamed: "What is my dog\'s name?"');
    try {
      process.stdout.write('   ');
      for await (const e of client.chat({ userId, message: "What is my dog's name?" })) {
        if (e.event === 'started') process.stdout.write(`[session ${e.started.sessionId}] `);
        if (e.event === 'context') process.stdout.write(`[${e.context.memories.length} memories] `);
        if (e.event === 'delta') process.stdout.write(e.delta.text);
        if (e.event === 'done') process.stdout.write(`\n   [done: ${e.done.usage.completionTokens} tokens]\n`);
        if (e.event === 'error') process.stdout.write(`\n   [error: ${e.error.reason} ${e.error.message}]\n`);
      }
    } catch (err) {
      if (!(err instanceof MemgrpcError && err.code === grpc.status.UNIMPLEMENTED)) throw err;
      console.log('(this server does not serve ChatService yet)');
    }
  } finally {
    client.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
