// SPDX-License-Identifier: AGPL-3.0-or-later
// A Node.js client drives an actor using only protos/ and @grpc/grpc-js.
//
// Loads protos/tractor/v1/actor.proto at run time with @grpc/proto-loader,
// starts the echo actor, and opens Actor.Open dialogs: a plain call with a
// JSON-like argument, a call into a namespace the actor does not expose, a
// remote exception, and a context with a bidirectional stream. Run by
// node_client_test.sh with `node --test`.
'use strict';

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const path = require('node:path');
const readline = require('node:readline');
const { after, before, test } = require('node:test');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const RUNFILES = path.join(process.env.TEST_SRCDIR || '.', 'tractor_cpp');
const ACTOR = path.join(RUNFILES, 'tests/foreign/echo_actor');
const PROTO_ROOT = path.join(RUNFILES, 'protos');
const CALL_TIMEOUT_MS = 10000;

const packageDefinition = protoLoader.loadSync('tractor/v1/actor.proto', {
  includeDirs: [PROTO_ROOT, '/usr/include'],
  keepCase: true,
  enums: String,
  longs: String,
  oneofs: true,
});
const v1 = grpc.loadPackageDefinition(packageDefinition).tractor.v1;

// Converts a JSON-like JS value to a google.protobuf.Value. protobufjs
// defines the well-known types itself, with camelCase field names (our own
// messages keep their snake_case names: `keepCase`).
function toValue(x) {
  if (x === null || x === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof x === 'number') return { numberValue: x };
  if (typeof x === 'string') return { stringValue: x };
  if (typeof x === 'boolean') return { boolValue: x };
  if (Array.isArray(x)) return { listValue: { values: x.map(toValue) } };
  const fields = {};
  for (const [k, v] of Object.entries(x)) fields[k] = toValue(v);
  return { structValue: { fields } };
}

// Converts a decoded google.protobuf.Value back to a JS value.
function fromValue(v) {
  switch (v.kind) {
    case 'nullValue': return null;
    case 'numberValue': return v.numberValue;
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'listValue': return (v.listValue.values || []).map(fromValue);
    case 'structValue': {
      const out = {};
      for (const [k, f] of Object.entries(v.structValue.fields || {})) {
        out[k] = fromValue(f);
      }
      return out;
    }
    default: throw new Error(`unknown google.protobuf.Value kind ${v.kind}`);
  }
}

function payload(x) {
  return { value: toValue(x) };
}

function startMsg(func, args, expect) {
  return {
    start: {
      cid: crypto.randomUUID(),
      func,
      args: payload(args),
      caller: { name: 'node-client' },
      expect,
    },
  };
}

let actor;
let client;

before(async () => {
  actor = spawn(ACTOR, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: actor.stdout });
  const first = await new Promise((resolve, reject) => {
    const timer = setTimeout(
        () => reject(new Error('the echo actor did not print "ready"')),
        CALL_TIMEOUT_MS);
    lines.once('line', (line) => { clearTimeout(timer); resolve(line); });
    actor.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the echo actor exited early with ${code}`));
    });
  });
  const words = first.trim().split(/\s+/);
  assert.equal(words[0], 'ready', `unexpected first line: ${first}`);
  client = new v1.Actor(words[1], grpc.credentials.createInsecure());
  await new Promise((resolve, reject) => {
    client.waitForReady(Date.now() + CALL_TIMEOUT_MS,
                        (err) => (err ? reject(err) : resolve()));
  });
});

after(async () => {
  if (client) client.close();
  if (!actor) return;
  // The actor exits when its stdin closes; kill it if it does not.
  const exited = new Promise((resolve) => {
    if (actor.exitCode !== null || actor.signalCode !== null) resolve();
    else actor.once('exit', resolve);
  });
  actor.stdin.end();
  const timer = setTimeout(() => actor.kill('SIGKILL'), CALL_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
});

// Opens one dialog, sends `msgs` then half-closes, and collects every reply.
function dialog(msgs) {
  return new Promise((resolve, reject) => {
    const call = client.Open({ deadline: Date.now() + CALL_TIMEOUT_MS });
    const replies = [];
    call.on('data', (m) => replies.push(m));
    call.on('error', reject);
    call.on('end', () => resolve(replies));
    for (const m of msgs) call.write(m);
    call.end();
  });
}

function call(func, args) {
  return dialog([startMsg(func, args, 'FUNC_TYPE_FUNCTION')]);
}

test('a plain call with a JSON-like argument returns its result', async () => {
  const replies = await call('demo:add', { a: 1.5, b: 2 });
  assert.equal(replies[0].kind, 'start_ack');
  assert.equal(replies[0].start_ack.functype, 'FUNC_TYPE_FUNCTION');
  const last = replies[replies.length - 1];
  assert.equal(last.kind, 'returned');
  assert.equal(fromValue(last.returned.payload.value), 3.5);
});

test('nested values round-trip through echo', async () => {
  const obj = { name: 'x', list: [1, 'two', true, null], n: { k: 1 } };
  const replies = await call('demo:echo', obj);
  const last = replies[replies.length - 1];
  assert.equal(last.kind, 'returned');
  assert.deepEqual(fromValue(last.returned.payload.value), obj);
});

test('a namespace the actor does not expose is a boxed error', async () => {
  const replies = await call('secret:peek', null);
  assert.equal(replies.length, 1);
  assert.equal(replies[0].kind, 'error');
  const err = replies[0].error;
  assert.equal(err.boxed_type, 'ModuleNotExposed');
  assert.equal(err.src.name, 'echo');
  assert.match(err.message, /secret/);
});

test('a remote exception is boxed with its type', async () => {
  const replies = await call('demo:fail', 'bad input');
  const last = replies[replies.length - 1];
  assert.equal(last.kind, 'error');
  assert.equal(last.error.boxed_type, 'std::invalid_argument');
  assert.equal(last.error.message, 'bad input');
  assert.ok(last.error.traceback, 'no traceback text');
});

test('a context streams both ways and returns after Stop', async () => {
  const call = client.Open({ deadline: Date.now() + CALL_TIMEOUT_MS });
  // Replies arrive one at a time; `next()` awaits the next one.
  const queue = [];
  const waiters = [];
  let failure = null;
  const push = (item) => {
    const w = waiters.shift();
    if (w) w(item); else queue.push(item);
  };
  call.on('data', (m) => push({ msg: m }));
  call.on('error', (e) => { failure = e; push({ error: e }); });
  call.on('end', () => push({ end: true }));
  const next = async () => {
    const item = queue.length ? queue.shift()
                              : await new Promise((r) => waiters.push(r));
    if (item.error) throw item.error;
    assert.ok(!item.end, 'the dialog ended early');
    return item.msg;
  };

  call.write(startMsg('demo:doubler', 3, 'FUNC_TYPE_CONTEXT'));
  const ack = await next();
  assert.equal(ack.kind, 'start_ack');
  assert.equal(ack.start_ack.functype, 'FUNC_TYPE_CONTEXT');
  const started = await next();
  assert.equal(started.kind, 'started');
  assert.equal(fromValue(started.started.payload.value), 3);
  // Interactive: each item comes back doubled before the next is sent.
  for (const i of [0, 1, 2.5]) {
    call.write({ yielded: { payload: payload(i) } });
    const reply = await next();
    assert.equal(reply.kind, 'yielded');
    assert.equal(fromValue(reply.yielded.payload.value), 2 * i);
  }
  call.write({ stop: {} });
  // The callee answers our Stop with its own, then returns its count.
  let result = null;
  for (;;) {
    const m = await next();
    if (m.kind === 'stop') continue;
    assert.equal(m.kind, 'returned', `unexpected ${m.kind}`);
    result = fromValue(m.returned.payload.value);
    break;
  }
  assert.equal(result, 3);
  call.end();
  assert.equal(failure, null);
});
