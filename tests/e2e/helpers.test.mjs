// Server-less checks of the suite's own helpers and of SDK facts the other
// files rely on. Needs no environment variables and no gateway.
// (This file reads no gateway metrics.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamChat, UserFromToken } from 'stream-chat';

import { connectError, mintToken, parsePrometheus } from './lib.mjs';

test('mintToken is byte-identical to StreamChat#createToken', () => {
  const server = new StreamChat('key', 'the-secret'); // only signs, never calls out
  const exp = 2_000_000_000;
  assert.equal(mintToken('alice-1', { exp, secret: 'the-secret' }), server.createToken('alice-1', exp));
  assert.equal(mintToken('alice-1', { secret: 'the-secret' }), server.createToken('alice-1'));
  assert.equal(
    mintToken('alice-1', { exp, iat: 1_700_000_000, secret: 'the-secret' }),
    server.createToken('alice-1', exp, 1_700_000_000),
  );
  // The SDK's local check on static tokens decodes user_id from the payload.
  assert.equal(UserFromToken(mintToken('carol-x_y', { exp, secret: 's' })), 'carol-x_y');
});

test('the SDK derives ws:// from the http:// base URL and keeps the port', () => {
  const c = new StreamChat('key', { baseURL: 'http://gateway.invalid:41234', timeout: 6000 });
  assert.equal(c.baseURL, 'http://gateway.invalid:41234');
  assert.equal(c.wsBaseURL, 'ws://gateway.invalid:41234');
  assert.equal(c.node, true);
});

test('connectError parses the SDK rejection (JSON inside Error#message)', () => {
  const e = new Error(JSON.stringify({ code: 43, StatusCode: 401, message: 'x', isWSFailure: false }));
  assert.deepEqual(connectError(e), { code: 43, StatusCode: 401, message: 'x', isWSFailure: false });
  assert.equal(connectError(new Error('plain')).code, undefined);
});

test('parsePrometheus reads labels and values', () => {
  const text = [
    '# HELP stream_edge_sessions_open Open sessions',
    '# TYPE stream_edge_sessions_open gauge',
    'stream_edge_sessions_open{transport="ws"} 3',
    'stream_edge_sessions_open{transport="longpoll"} 0',
    'stream_edge_upstream_connections_open{app="k\\"1"} 2',
    'process_open_fds 12',
  ].join('\n');
  const s = parsePrometheus(text);
  assert.deepEqual(s[0], { name: 'stream_edge_sessions_open', labels: { transport: 'ws' }, value: 3 });
  assert.deepEqual(s[2].labels, { app: 'k"1' });
  assert.deepEqual(s[3], { name: 'process_open_fds', labels: {}, value: 12 });
});
