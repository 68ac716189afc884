// The JS SDK's heartbeat against the gateway, in scaled time: the SDK pings 25 s after each
// health.check it receives and reschedules on every one (stream-chat 9.53.0 src/connection.ts
// 498-502, 655-671), and reconnects after 35 s without a frame (672-693). Run on its own gateway
// (tests/it/sdk.rs, `stream_chat_sdk_heartbeat`) with `ws.health_interval` 250 ms and
// `ws.client_idle_timeout` 750 ms; the SDK's connection object gets the same scale (pingInterval
// 250 ms, connectionCheckTimeout 350 ms). A gateway whose own health.check raced the SDK's ping
// would either silence the SDK's pings (the check arrives first and reschedules them) or answer
// every cycle twice.

import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { TEST_OPTS, WS_CLOSE_LOG, cleanup, connect, eventually, metric, requireEnv, uid } from './lib.mjs';

before(() => requireEnv());
afterEach(cleanup);
after(cleanup);

describe('heartbeat', () => {
  test('the SDK keeps pinging, each ping gets one answer, and the session stays', TEST_OPTS, async () => {
    const userId = uid('beat');
    const { client, response } = await connect(userId);
    const conn = client.wsConnection;
    conn.pingInterval = 250;
    conn.connectionCheckTimeout = 350;
    const idleBefore = await metric('stream_edge_sessions_closed_total', { reason: 'client_idle' });

    let pings = 0;
    const ws = conn.ws;
    const send = ws.send.bind(ws);
    ws.send = (data) => {
      if (typeof data === 'string' && data.includes('"health.check"')) pings += 1;
      return send(data);
    };
    let checks = 0;
    client.on('health.check', () => {
      checks += 1;
    });

    // Twelve cycles: four client idle timeouts.
    await eventually(() => pings >= 12, { timeoutMs: 15_000, intervalMs: 50, what: `12 SDK pings (${pings} so far, ${checks} checks)` });

    assert.equal(client.connectLog.length, 1, 'the SDK never reconnected');
    assert.ok(!client.sdkLog.lines.some((l) => WS_CLOSE_LOG.test(l)), 'the socket never closed');
    assert.equal(client.wsConnection, conn);
    assert.equal(conn.connectionID, response.connection_id);
    // One answer per ping, and at most the one unsolicited check that rescheduled the SDK's first
    // (25 s) ping to the scaled interval.
    assert.ok(checks <= pings + 1, `${checks} health checks for ${pings} pings`);
    const idleAfter = await metric('stream_edge_sessions_closed_total', { reason: 'client_idle' });
    assert.equal(idleAfter, idleBefore, 'no session closed as idle');
  });
});
