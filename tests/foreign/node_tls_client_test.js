// SPDX-License-Identifier: AGPL-3.0-or-later
// A Node.js (@grpc/grpc-js) client against an actor and a registrar daemon
// in mutual TLS, with a client certificate the way a grpc-js user sets it
// up, and refused without one; and in plaintext, a client without the mesh
// secret may call functions but not CancelActor (docs/security.md).
//
// The certificates are made at test time by tests/make_test_pki.sh
// (openssl). Run by node_client_test.sh with `node --test`.
'use strict';

const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { after, before, test } = require('node:test');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const RUNFILES = path.join(process.env.TEST_SRCDIR || '.', 'tractor_cpp');
const ACTOR = path.join(RUNFILES, 'tests/foreign/echo_actor');
const REGISTRAR = path.join(RUNFILES, 'registrar/registrar');
const MAKE_PKI = path.join(RUNFILES, 'tests/make_test_pki.sh');
const PROTO_ROOT = path.join(RUNFILES, 'protos');
const TIMEOUT_MS = 10000;

const v1 = grpc.loadPackageDefinition(protoLoader.loadSync(
    ['tractor/v1/actor.proto', 'tractor/v1/registrar.proto'], {
      includeDirs: [PROTO_ROOT, '/usr/include'],
      keepCase: true,
      enums: String,
      longs: String,
      oneofs: true,
    })).tractor.v1;

const PKI = fs.mkdtempSync(path.join(process.env.TEST_TMPDIR || os.tmpdir(),
                                     'pki-'));
execFileSync(MAKE_PKI, [PKI]);
const pem = (name) => fs.readFileSync(path.join(PKI, name));

const MTLS_ENV = {
  TRACTOR_TLS_CA: path.join(PKI, 'ca.pem'),
  TRACTOR_TLS_CERT: path.join(PKI, 'node.pem'),
  TRACTOR_TLS_KEY: path.join(PKI, 'node.key'),
  TRACTOR_TLS_REQUIRE_CLIENT_CERT: '1',
};
const SECRET = 'node-test-secret';

const procs = [];

// Starts `argv` and resolves with the words of its first stdout line.
function startProc(argv, env) {
  const proc = spawn(argv[0], argv.slice(1),
                     { stdio: ['pipe', 'pipe', 'inherit'],
                       env: { ...process.env, ...env } });
  procs.push(proc);
  const lines = readline.createInterface({ input: proc.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
        () => reject(new Error(`${argv[0]} printed nothing`)), TIMEOUT_MS);
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve(line.trim().split(/\s+/));
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${argv[0]} exited early with ${code}`));
    });
  });
}

let mtlsActor;
let mtlsRegistrar;
let plainActor;

before(async () => {
  // Each actor serves a registrar of its own on a random port: one is in
  // mutual TLS and one in plaintext, so they cannot share one.
  mtlsActor = (await startProc([ACTOR],
                               { ...MTLS_ENV, TRACTOR_REGISTRY: '127.0.0.1:0' }))[1];
  mtlsRegistrar = (await startProc(
      [REGISTRAR, '--listen', '127.0.0.1:0', '--loglevel', 'error',
       '--tls_ca', MTLS_ENV.TRACTOR_TLS_CA,
       '--tls_cert', MTLS_ENV.TRACTOR_TLS_CERT,
       '--tls_key', MTLS_ENV.TRACTOR_TLS_KEY,
       '--tls_require_client_cert=true'], {})).pop();
  plainActor = (await startProc([ACTOR], { TRACTOR_SECRET: SECRET,
                                          TRACTOR_REGISTRY: '127.0.0.1:0' }))[1];
});

after(async () => {
  await Promise.all(procs.map((proc) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return null;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), TIMEOUT_MS);
    return exited.then(() => clearTimeout(timer));
  }));
});

function unary(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata || new grpc.Metadata(),
                   { deadline: Date.now() + TIMEOUT_MS },
                   (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

function clientCreds(identity) {
  if (identity === null) return grpc.credentials.createSsl(pem('ca.pem'));
  return grpc.credentials.createSsl(pem('ca.pem'), pem(`${identity}.key`),
                                    pem(`${identity}.pem`));
}

function addStart() {
  return {
    start: {
      cid: crypto.randomUUID(),
      func: 'demo:add',
      args: { value: { structValue: { fields: {
        a: { numberValue: 1 }, b: { numberValue: 2 } } } } },
      caller: { name: 'node-client' },
    },
  };
}

test('a client certificate calls the mTLS actor and registrar', async () => {
  const actor = new v1.Actor(mtlsActor, clientCreds('client'));
  const registrar = new v1.Registrar(mtlsRegistrar, clientCreds('client'));
  try {
    const reply = await unary(actor, 'Call', addStart());
    assert.equal(reply.returned.payload.value.numberValue, 3);
    const info = await unary(actor, 'Info', {});
    assert.equal(info.aid.name, 'echo');
    const found = await unary(registrar, 'Find', { name: 'nobody' });
    assert.equal((found.registrations || []).length, 0);
    // A certificate of the mesh CA makes a member.
    const cancelled = await unary(actor, 'CancelTask', { cid: 'none' });
    assert.ok(!cancelled.found, 'no such dialog');
  } finally {
    actor.close();
    registrar.close();
  }
});

test('without a client certificate the handshake fails', async () => {
  for (const identity of [null, 'rogue']) {
    const actor = new v1.Actor(mtlsActor, clientCreds(identity));
    const registrar = new v1.Registrar(mtlsRegistrar, clientCreds(identity));
    try {
      await assert.rejects(unary(actor, 'Info', {}),
                           { code: grpc.status.UNAVAILABLE });
      await assert.rejects(unary(registrar, 'Find', { name: 'x' }),
                           { code: grpc.status.UNAVAILABLE });
    } finally {
      actor.close();
      registrar.close();
    }
  }
});

test('plaintext: functions are open, CancelActor needs the secret',
     async () => {
       const actor = new v1.Actor(plainActor,
                                  grpc.credentials.createInsecure());
       try {
         const reply = await unary(actor, 'Call', addStart());
         assert.equal(reply.returned.payload.value.numberValue, 3);
         await assert.rejects(
             unary(actor, 'CancelActor', { requester: { name: 'node' } }),
             (err) => err.code === grpc.status.PERMISSION_DENIED &&
                 /CancelActor refused/.test(err.details));
         const metadata = new grpc.Metadata();
         metadata.set('tractor-secret', SECRET);
         const cancelled = await unary(actor, 'CancelTask', { cid: 'none' },
                                       metadata);
         assert.ok(!cancelled.found, 'no such dialog');
       } finally {
         actor.close();
       }
     });
