// gateway metric names used: stream_edge_upstream_connections_open (gauge, label app), stream_edge_sessions_open (gauge, label transport=ws|longpoll)
//
// Multiplexing: all SDK sessions of one user share ONE upstream connection;
// events are routed only to the sessions that watch the event's channel;
// upstream loss and per-session token expiry are recovered by the SDK.

import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  TEST_OPTS,
  WS_CLOSE_LOG,
  cfg,
  cleanup,
  connect,
  dropUpstream,
  emulatorConnections,
  eventually,
  isMessage,
  longLivedToken,
  metric,
  metricSeries,
  mintToken,
  nowSeconds,
  recorder,
  requireEnv,
  uid,
  upstreamCount,
  waitForEvent,
  waitForLog,
} from './lib.mjs';

const UPSTREAM_OPEN = 'stream_edge_upstream_connections_open';
const SESSIONS_OPEN = 'stream_edge_sessions_open';

before(() => requireEnv());
afterEach(cleanup);
after(cleanup);

/**
 * dave (one client) creates one messaging channel per id with members
 * [carol, dave] and watches all of them. Returns { dave, daveChans }.
 */
async function daveWithChannels(daveId, carolId, channelIds) {
  const { client: dave } = await connect(daveId);
  const daveChans = [];
  for (const id of channelIds) {
    const ch = dave.channel('messaging', id, { members: [carolId, daveId] });
    await ch.watch();
    daveChans.push(ch);
  }
  return { dave, daveChans };
}

/** One carol client per channel id; client i watches channel i only. */
async function carolClients(carolId, channelIds) {
  const carols = [];
  for (const id of channelIds) {
    const { client, response } = await connect(carolId);
    const channel = client.channel('messaging', id);
    await channel.watch();
    carols.push({ client, channel, response });
  }
  return carols;
}

/**
 * dave sends one message to each channel; every carol client i must receive
 * the message of channel i. Returns the texts.
 */
async function everyCarolReceivesOwn(daveChans, carols, label) {
  const texts = daveChans.map((ch) => `${label} ${ch.id} ${uid('m')}`);
  const waits = carols.map((c, i) =>
    waitForEvent(c.client, 'message.new', isMessage(c.channel.cid, { text: texts[i] }), 10_000),
  );
  for (let i = 0; i < daveChans.length; i++) await daveChans[i].sendMessage({ text: texts[i] });
  await Promise.all(waits);
  return texts;
}

/** Upstream connections of the test app according to the emulator. */
async function emulatorTotalForApp() {
  const body = await emulatorConnections();
  return Object.entries(body.users ?? {})
    .filter(([k]) => k.startsWith(`${cfg.apiKey}/`))
    .reduce((acc, [, n]) => acc + n, 0);
}

describe('multiplexing', () => {
  test('three sessions of one user share one upstream; events routed per watched channel', TEST_OPTS, async () => {
    const carolId = uid('carol');
    const daveId = uid('dave');
    const channelIds = [uid('mx1'), uid('mx2'), uid('mx3')];

    const sessionsBefore = await metric(SESSIONS_OPEN, { transport: 'ws' });

    const { daveChans } = await daveWithChannels(daveId, carolId, channelIds);
    const carols = await carolClients(carolId, channelIds);

    // Each session has its own connection_id.
    const connIds = new Set(carols.map((c) => c.response.connection_id));
    assert.equal(connIds.size, 3, 'every session needs a distinct connection_id');

    // Exactly one upstream per user at the emulator.
    assert.equal(await upstreamCount(carolId), 1, 'carol: 3 sessions, 1 upstream connection');
    assert.equal(await upstreamCount(daveId), 1, 'dave: 1 session, 1 upstream connection');

    // Gateway metrics agree: upstream gauge == emulator's count for this app
    // (one per connected user), and 4 more WS sessions than before.
    assert.ok((await metricSeries(UPSTREAM_OPEN)).length > 0, `${UPSTREAM_OPEN} must be exported`);
    await eventually(
      async () => {
        const [gauge, emu] = [await metric(UPSTREAM_OPEN), await emulatorTotalForApp()];
        return gauge === emu && gauge >= 2 ? true : { gauge, emu };
      },
      { what: `${UPSTREAM_OPEN} == emulator connections` },
    );
    await eventually(
      async () => {
        const n = await metric(SESSIONS_OPEN, { transport: 'ws' });
        return n - sessionsBefore === 4 ? true : { sessionsBefore, now: n };
      },
      { what: `${SESSIONS_OPEN}{transport="ws"} +4` },
    );

    // Routing: record message.new on every carol client, send one message to
    // each channel, then a sentinel to each channel. Once client i has its
    // sentinel, everything dave sent earlier has been routed (one upstream,
    // in order), so any foreign message.new would already be recorded.
    const recs = carols.map((c) => recorder(c.client, ['message.new']));
    const sentinels = daveChans.map((ch) => `sentinel ${ch.id} ${uid('s')}`);
    const sentinelWaits = carols.map((c, i) =>
      waitForEvent(c.client, 'message.new', isMessage(c.channel.cid, { text: sentinels[i] })),
    );
    const texts = daveChans.map((ch) => `to ${ch.id} ${uid('m')}`);
    for (let i = 0; i < 3; i++) await daveChans[i].sendMessage({ text: texts[i] });
    for (let i = 0; i < 3; i++) await daveChans[i].sendMessage({ text: sentinels[i] });
    await Promise.all(sentinelWaits);

    for (let i = 0; i < 3; i++) {
      const got = recs[i].events.map((e) => ({ cid: e.cid, text: e.message?.text }));
      assert.deepEqual(
        got,
        [
          { cid: carols[i].channel.cid, text: texts[i] },
          { cid: carols[i].channel.cid, text: sentinels[i] },
        ],
        `carol client ${i} must get exactly the message.new events of ${carols[i].channel.cid}`,
      );
      recs[i].stop();
    }
  });

  test('stopWatching by one session does not unsubscribe another session of the same user', TEST_OPTS, async () => {
    const carolId = uid('carol');
    const daveId = uid('dave');
    const [c1, c2] = [uid('sw1'), uid('sw2')];
    const { daveChans } = await daveWithChannels(daveId, carolId, [c1, c2]);
    const [d1, d2] = daveChans;

    // carol A watches c1 and c2; carol B watches c1.
    const { client: a } = await connect(carolId);
    const a1 = a.channel('messaging', c1);
    const a2 = a.channel('messaging', c2);
    await a1.watch();
    await a2.watch();
    const { client: b } = await connect(carolId);
    const b1 = b.channel('messaging', c1);
    await b1.watch();

    await a1.stopWatching();
    const recA = recorder(a, ['message.new']);

    // B still gets c1 traffic.
    const text = `still watched ${uid('m')}`;
    const bGot = waitForEvent(b, 'message.new', isMessage(b1.cid, { text }));
    await d1.sendMessage({ text });
    await bGot;

    // A must not get c1 traffic any more: barrier = a sentinel on c2, which A
    // still watches, sent after the c1 message.
    const sentinel = `sentinel ${uid('s')}`;
    const aGotSentinel = waitForEvent(a, 'message.new', isMessage(a2.cid, { text: sentinel }));
    await d2.sendMessage({ text: sentinel });
    await aGotSentinel;
    recA.stop();
    const leaked = recA.events.filter((e) => e.cid === a1.cid);
    assert.deepEqual(
      leaked.map((e) => e.message?.text),
      [],
      'session A stopped watching c1 and must not receive its message.new',
    );
    assert.equal(await upstreamCount(carolId), 1);
  });

  test('upstream loss: every session recovers and messages flow again', TEST_OPTS, async () => {
    const carolId = uid('carol');
    const daveId = uid('dave');
    const channelIds = [uid('ul1'), uid('ul2'), uid('ul3')];
    const { dave, daveChans } = await daveWithChannels(daveId, carolId, channelIds);
    const carols = await carolClients(carolId, channelIds);
    await everyCarolReceivesOwn(daveChans, carols, 'before drop');
    assert.equal(await upstreamCount(carolId), 1);

    const daveRec = recorder(dave, ['connection.changed', 'connection.recovered']);
    const recovered = carols.map((c) => waitForEvent(c.client, 'connection.recovered', () => true, 20_000));
    const dropped = await dropUpstream(carolId);
    assert.equal(dropped, 1, 'the emulator held exactly one upstream socket for carol');
    await Promise.all(recovered);

    // A new upstream exists and events flow to the right sessions again.
    await eventually(async () => (await upstreamCount(carolId)) === 1, {
      what: 'carol has one upstream connection again',
    });
    await everyCarolReceivesOwn(daveChans, carols, 'after drop');
    assert.equal(await upstreamCount(carolId), 1);

    // dave's upstream was not touched.
    daveRec.stop();
    assert.deepEqual(daveRec.events.map((e) => e.type), [], 'dave must not notice carol losing her upstream');
  });

  test('token expiry of one session: it refreshes and reconnects, the others are untouched', TEST_OPTS, async () => {
    const carolId = uid('carol');
    const daveId = uid('dave');
    const channelIds = [uid('te1'), uid('te2'), uid('te3')];
    const { daveChans } = await daveWithChannels(daveId, carolId, channelIds);

    // Two long-lived sessions first (channels 2 and 3).
    const steady = await carolClients(carolId, channelIds.slice(1));
    const steadyRecs = steady.map((c) => recorder(c.client, ['connection.changed', 'connection.recovered']));

    // The short-lived session (channel 1): first token expires in ~3 s.
    let calls = 0;
    const provider = async () => {
      calls += 1;
      return calls === 1
        ? mintToken(carolId, { exp: nowSeconds() + 3 })
        : longLivedToken(carolId);
    };
    const { client: shortClient } = await connect(carolId, { tokenProvider: provider });
    const shortChan = shortClient.channel('messaging', channelIds[0]);
    await shortChan.watch();
    assert.equal(calls, 1);
    const carols = [{ client: shortClient, channel: shortChan }, ...steady];
    assert.equal(await upstreamCount(carolId), 1);

    const closed = waitForLog(shortClient, WS_CLOSE_LOG, 10_000);
    const recovered = waitForEvent(shortClient, 'connection.recovered', () => true, 20_000);

    // The gateway ends the expired session. It must not use close code 1000:
    // the SDK treats 1000 on an established socket as final and would sit on
    // the dead socket until its 35 s watchdog.
    const [, code] = await closed;
    assert.notEqual(Number(code), 1000, 'expired live session must be closed with a non-1000 code');

    // While the short session is reconnecting, the steady ones keep receiving.
    const midText = `during refresh ${uid('m')}`;
    const midGot = waitForEvent(steady[0].client, 'message.new', isMessage(steady[0].channel.cid, { text: midText }));
    await daveChans[1].sendMessage({ text: midText });
    await midGot;

    // SDK reconnects with the old token, gets code 40, calls the provider, reconnects.
    await recovered;
    assert.ok(calls >= 2, `provider must be called again after expiry (called ${calls}x)`);
    assert.equal(shortClient.wsConnection?.isHealthy, true);

    await everyCarolReceivesOwn(daveChans, carols, 'after refresh');
    assert.equal(await upstreamCount(carolId), 1, 'a session token expiring must not replace the upstream');

    for (const [i, rec] of steadyRecs.entries()) {
      rec.stop();
      assert.deepEqual(
        rec.events.map((e) => `${e.type}${'online' in e ? `(online=${e.online})` : ''}`),
        [],
        `steady carol session ${i} must see no connection.changed / connection.recovered`,
      );
    }
  });

  test('upstream closes after the linger once the last session disconnects', TEST_OPTS, async () => {
    const carolId = uid('carol');
    const daveId = uid('dave');
    const channelIds = [uid('lg1'), uid('lg2'), uid('lg3')];
    const { daveChans } = await daveWithChannels(daveId, carolId, channelIds);
    const carols = await carolClients(carolId, channelIds);
    await everyCarolReceivesOwn(daveChans, carols, 'before disconnect');
    assert.equal(await upstreamCount(carolId), 1);

    const sessionsBefore = await metric(SESSIONS_OPEN, { transport: 'ws' });

    // Two of three leave: the upstream must stay for the remaining session.
    await carols[0].client.disconnectUser(3000);
    await carols[1].client.disconnectUser(3000);
    const text = `last one standing ${uid('m')}`;
    const got = waitForEvent(carols[2].client, 'message.new', isMessage(carols[2].channel.cid, { text }));
    await daveChans[2].sendMessage({ text });
    await got;
    assert.equal(await upstreamCount(carolId), 1, 'one session left: upstream stays');

    // The last one leaves: upstream closes after the linger (~1 s in the harness).
    await carols[2].client.disconnectUser(3000);
    await eventually(async () => (await upstreamCount(carolId)) === 0, {
      timeoutMs: 5000,
      what: "carol's upstream connection closed after linger",
    });
    await eventually(
      async () => {
        const n = await metric(SESSIONS_OPEN, { transport: 'ws' });
        return sessionsBefore - n === 3 ? true : { sessionsBefore, now: n };
      },
      { what: `${SESSIONS_OPEN}{transport="ws"} -3` },
    );
    await eventually(
      async () => {
        const [gauge, emu] = [await metric(UPSTREAM_OPEN), await emulatorTotalForApp()];
        return gauge === emu ? true : { gauge, emu };
      },
      { what: `${UPSTREAM_OPEN} == emulator connections after linger` },
    );

    // dave is unaffected.
    assert.equal(await upstreamCount(daveId), 1);
  });

  test('a later session gets the current me: unread counts, profile and devices', TEST_OPTS, async () => {
    const carolId = uid('carol');
    const daveId = uid('dave');
    // carol's first session watches nothing: dave's messages reach it as notifications.
    const { client: carol1, response: first } = await connect(carolId);
    assert.equal(first.me.total_unread_count, 0);
    const { daveChans } = await daveWithChannels(daveId, carolId, [uid('me')]);
    const second = waitForEvent(carol1, 'notification.message_new', (e) => e.total_unread_count === 2);
    await daveChans[0].sendMessage({ text: 'one' });
    await daveChans[0].sendMessage({ text: 'two' });
    await second;

    // A later session, with a push device: its me has the counts of now, not of the upstream's open.
    const device = { id: uid('push'), push_provider: 'firebase' };
    const { client: carol2, response: r2 } = await connect(carolId, { clientOptions: { device } });
    assert.equal(r2.me.total_unread_count, 2, 'current unread count in the connect answer');
    assert.equal(carol2.user.unread_channels, 1, "the SDK's client.user has it");
    assert.ok(r2.me.devices.some((d) => d.id === device.id), 'its own device is registered');

    // A device added through the SDK, and a profile change, show in the next session's me.
    const added = uid('push');
    await carol2.addDevice(added, 'apn');
    const renamed = waitForEvent(carol1, 'user.updated', (e) => e.user?.name === 'Carol Two');
    await carol2.partialUpdateUser({ id: carolId, set: { name: 'Carol Two' } });
    await renamed;
    const { client: carol3, response: r3 } = await connect(carolId, { user: { name: 'Carol Two' } });
    const ids = r3.me.devices.map((d) => d.id).sort();
    assert.deepEqual(ids, [device.id, added].sort(), 'me.devices as upstream lists them');
    assert.deepEqual(
      (await carol3.getDevices()).devices.map((d) => d.id).sort(),
      ids,
      "me.devices matches upstream's own list",
    );
    assert.equal(carol3.user.name, 'Carol Two');
    assert.equal(carol3.user.total_unread_count, 2);
  });
});
