// gateway metric names used: stream_edge_events_dropped_total (counter, labels reason, type)
//
// Privacy filtering at the edge (issue 5, stream-protocol.md §5). Alice connects
// with typing indicators and read receipts off, Bob with the defaults, both
// watch one channel. The embedded upstream does NO privacy filtering, so every
// event or read entry Bob does not get is the gateway's doing.
//
// Two sources of typing from Alice are used, because the SDK itself never
// sends typing for a user whose own typing_indicators are off (`keystroke()`
// is a no-op then, §5.1):
//   * `channel.sendEvent({type:'typing.start'})` from Alice's own client goes
//     through the gateway's OUTBOUND check (answered by the gateway, never
//     forwarded);
//   * a server-side client talking to the embedded upstream directly (not
//     through the gateway) emits a typing event for Alice, which reaches the
//     gateway from upstream and exercises the INBOUND filter. Alice's own
//     client receiving it is the control that it was emitted at all (a
//     session's own events are never filtered).
//
// "Did not arrive" is shown with a sentinel message on the same channel sent
// after the filtered thing: events on one connection are ordered.
//
// Read state: the SDK seeds read state locally from message.new (§5.3), so the
// assertions on `read[]` look at REST response bodies (compared with the same
// request sent to the upstream directly) and at the state of clients that got
// no message.new from Alice.

import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { StreamChat } from 'stream-chat';

import {
  TEST_OPTS,
  cfg,
  cleanup,
  connect,
  eventually,
  isMessage,
  longLivedToken,
  metric,
  newClient,
  recorder,
  requireEnv,
  uid,
  waitForEvent,
} from './lib.mjs';

const DROPPED = 'stream_edge_events_dropped_total';
const HIDDEN = {
  typing_indicators: { enabled: false },
  read_receipts: { enabled: false },
};
const TYPING = ['typing.start', 'typing.stop'];

let proxy;

before(async () => {
  requireEnv();
  proxy = await startUpgradeRefusingProxy(cfg.gatewayUrl);
});
afterEach(cleanup);
after(async () => {
  await cleanup();
  await proxy?.close();
});

// ---------------------------------------------------------------------------
// Local helpers

/** Server-side client talking to the embedded upstream directly (bypasses the gateway). */
function upstreamServerClient() {
  return new StreamChat(cfg.apiKey, cfg.apiSecret, {
    baseURL: cfg.emulatorUrl,
    timeout: 6000,
    enableInsights: false,
  });
}

/** Emit a typing event for `userId` at the upstream, as a server-side sender would. */
async function injectTyping(channelId, userId, type) {
  const res = await upstreamServerClient().channel('messaging', channelId).sendEvent({ type, user_id: userId });
  assert.equal(res.event?.type, type, `upstream send-event answer: ${JSON.stringify(res)}`);
  assert.equal(res.event?.user?.id, userId);
}

/**
 * Raw JSON of a REST call made with `userId`'s token to `base` (the gateway or,
 * for comparison, the upstream directly), as the SDK would send it.
 */
async function rawPost(base, path, userId, body) {
  const u = `${base}${path}?api_key=${encodeURIComponent(cfg.apiKey)}`;
  const res = await fetch(u, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: longLivedToken(userId),
      'stream-auth-type': 'jwt',
    },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  assert.ok(res.ok, `POST ${path} via ${base} as ${userId} -> HTTP ${res.status}: ${text}`);
  return JSON.parse(text);
}

const queryBody = { state: true, watch: false, presence: false, messages: { limit: 10 } };
const channelQuery = (base, channelId, userId) =>
  rawPost(base, `/channels/messaging/${channelId}/query`, userId, queryBody);
const queryChannels = (base, cid, userId) =>
  rawPost(base, '/channels', userId, {
    filter_conditions: { cid: { $in: [cid] } },
    state: true,
    watch: false,
    presence: false,
  });
const readUsers = (read) => (read ?? []).map((r) => r.user?.id).sort();

const dropped = (labels) => metric(DROPPED, labels);

/** Wait until the counter is at least `min`. */
function droppedAtLeast(labels, min) {
  return eventually(async () => (await dropped(labels)) >= min, {
    what: `${DROPPED}${JSON.stringify(labels)} >= ${min}`,
  });
}

/**
 * Sentinel: `sender` (a watching channel) sends a message; resolves once every
 * client in `receivers` got its message.new.
 */
async function sentinel(senderChan, receivers) {
  const text = `sentinel ${uid('s')}`;
  const got = receivers.map((c) => waitForEvent(c, 'message.new', isMessage(senderChan.cid, { text })));
  await senderChan.sendMessage({ text });
  await Promise.all(got);
}

/**
 * Alice (typing + read receipts off, `aliceTabs` clients), Bob (defaults) and
 * optional `extra` members; Bob creates the channel, everybody watches it.
 */
async function room({ aliceTabs = 1, extraMembers = [] } = {}) {
  const aliceId = uid('alice');
  const bobId = uid('bob');
  const channelId = uid('priv');
  const alices = [];
  for (let i = 0; i < aliceTabs; i += 1) {
    const { client } = await connect(aliceId, { user: { privacy_settings: HIDDEN } });
    alices.push(client);
  }
  const { client: bob } = await connect(bobId);
  const bobChan = bob.channel('messaging', channelId, { members: [aliceId, bobId, ...extraMembers] });
  await bobChan.watch();
  const aliceChans = [];
  for (const a of alices) {
    const ch = a.channel('messaging', channelId);
    await ch.watch();
    aliceChans.push(ch);
  }
  return {
    aliceId,
    bobId,
    channelId,
    cid: bobChan.cid,
    alice: alices[0],
    aliceChan: aliceChans[0],
    alices,
    aliceChans,
    bob,
    bobChan,
  };
}

/**
 * HTTP/1.1 forwarding proxy on 127.0.0.1:0 in front of `target` that refuses
 * every WebSocket upgrade with 403 (as a WebSocket-blocking corporate proxy
 * would), so an SDK with `enableWSFallback` falls back to long-poll.
 */
async function startUpgradeRefusingProxy(target) {
  const t = new URL(target);
  const agent = new http.Agent({ keepAlive: true });
  const hop = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
  const strip = (h) => Object.fromEntries(Object.entries(h).filter(([k]) => !hop.has(k.toLowerCase())));
  const upgrades = [];
  const server = http.createServer((req, res) => {
    const up = http.request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...strip(req.headers), host: t.host }, agent },
      (upRes) => {
        res.writeHead(upRes.statusCode, upRes.statusMessage, strip(upRes.headers));
        upRes.pipe(res);
        upRes.on('error', () => res.destroy());
      },
    );
    up.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`proxy: ${err.message}`);
    });
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  });
  server.on('upgrade', (req, socket) => {
    upgrades.push(req.url);
    socket.on('error', () => {});
    socket.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', () => socket.destroy());
  });
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 0;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    upgrades,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}

/** Connect `userId` through the upgrade-refusing proxy; resolves once it runs on long-poll. */
async function connectLongPoll(userId, user = {}) {
  const client = newClient({ baseURL: proxy.url, enableWSFallback: true });
  const upgradesBefore = proxy.upgrades.length;
  const transportChanged = waitForEvent(client, 'transport.changed', () => true, 15_000);
  await client.connectUser({ id: userId, name: userId, ...user }, longLivedToken(userId));
  const transport = await transportChanged;
  assert.equal(transport.mode, 'longpoll', `transport.changed: ${JSON.stringify(transport)}`);
  assert.ok(proxy.upgrades.length > upgradesBefore, 'the SDK must have tried (and been refused) a WebSocket first');
  assert.equal(client.wsFallback?.isHealthy(), true, 'long-poll connection must be healthy');
  return client;
}

// ---------------------------------------------------------------------------

describe('privacy', () => {
  test('typing: Bob never sees Alice typing (outbound and inbound); Alice sees Bob typing', TEST_OPTS, async () => {
    const { aliceId, bobId, channelId, cid, alice, aliceChan, bob, bobChan } = await room();

    // The SDK takes its own guard from me.privacy_settings (health.check, §1.3).
    assert.equal(
      alice.user?.privacy_settings?.typing_indicators?.enabled,
      false,
      `Alice's me must carry her privacy_settings: ${JSON.stringify(alice.user?.privacy_settings)}`,
    );

    const droppedIn = {
      start: await dropped({ reason: 'privacy', type: 'typing.start' }),
      stop: await dropped({ reason: 'privacy', type: 'typing.stop' }),
    };
    const droppedOut = await dropped({ reason: 'privacy_outbound', type: 'typing.start' });
    const bobTyping = recorder(bob, TYPING);

    // Outbound: Alice's client sends typing regardless of the SDK guard; the
    // gateway answers it itself (upstream's send-event shape) and never forwards it.
    const ack = await aliceChan.sendEvent({ type: 'typing.start' });
    assert.equal(ack.event?.type, 'typing.start', `ack: ${JSON.stringify(ack)}`);
    assert.equal(ack.event?.cid, cid);
    assert.equal(ack.event?.user?.id, aliceId);

    // Inbound: the upstream emits Alice's typing to every watcher.
    const aliceOwnStart = waitForEvent(alice, 'typing.start', (e) => e.cid === cid && e.user?.id === aliceId);
    await injectTyping(channelId, aliceId, 'typing.start');
    await aliceOwnStart; // control: emitted, and her own session still gets it
    const aliceOwnStop = waitForEvent(alice, 'typing.stop', (e) => e.cid === cid && e.user?.id === aliceId);
    await injectTyping(channelId, aliceId, 'typing.stop');
    await aliceOwnStop;

    await sentinel(aliceChan, [bob, alice]);
    bobTyping.stop();
    assert.deepEqual(
      bobTyping.events.filter((e) => e.user?.id === aliceId).map((e) => e.type),
      [],
      'Bob must not get any typing event of Alice',
    );
    assert.equal(bobChan.state.typing[aliceId], undefined);

    await droppedAtLeast({ reason: 'privacy', type: 'typing.start' }, droppedIn.start + 1);
    await droppedAtLeast({ reason: 'privacy', type: 'typing.stop' }, droppedIn.stop + 1);
    await droppedAtLeast({ reason: 'privacy_outbound', type: 'typing.start' }, droppedOut + 1);

    // Bob's typing is visible to Alice (the SDK's own keystroke path).
    const aliceSeesStart = waitForEvent(alice, 'typing.start', (e) => e.cid === cid && e.user?.id === bobId);
    const aliceSeesStop = waitForEvent(alice, 'typing.stop', (e) => e.cid === cid && e.user?.id === bobId);
    await bobChan.keystroke();
    await aliceSeesStart;
    assert.ok(aliceChan.state.typing[bobId], 'Alice\'s channel state shows Bob typing');
    await bobChan.stopTyping();
    await aliceSeesStop;
  });

  test('read: Bob gets neither Alice\'s message.read nor her read state; her second tab syncs; Bob\'s reads are visible', TEST_OPTS, async () => {
    const { aliceId, bobId, channelId, cid, alice, aliceChan, alices, aliceChans, bob, bobChan } = await room({
      aliceTabs: 2,
    });
    const [alice2, aliceChan2] = [alices[1], aliceChans[1]];

    // Bob's watch response already lacked Alice's entry (Alice sent no message,
    // so the SDK cannot have seeded one locally).
    assert.equal(bobChan.state.read[aliceId], undefined, 'Bob\'s watch must not expose Alice\'s read state');

    const droppedRead = await dropped({ reason: 'privacy', type: 'message.read' });
    const droppedState = await dropped({ reason: 'privacy_read_state' });

    // Bob writes; Alice's second tab counts it unread.
    const m1Text = `from bob ${uid('m')}`;
    const tab2Got = waitForEvent(alice2, 'message.new', isMessage(cid, { text: m1Text }));
    const m1 = (await bobChan.sendMessage({ text: m1Text })).message;
    await tab2Got;
    assert.equal(aliceChan2.countUnread(), 1, 'control: tab 2 counts Bob\'s message as unread');

    // Alice reads on tab 1.
    const bobReads = recorder(bob, ['message.read']);
    const tab2Read = waitForEvent(alice2, 'message.read', (e) => e.cid === cid && e.user?.id === aliceId);
    const tab2MarkRead = waitForEvent(alice2, 'notification.mark_read', (e) => e.cid === cid);
    const readRes = await aliceChan.markRead();
    assert.ok(readRes, 'markRead() was skipped by the SDK (read_events / read-events capability)');
    assert.equal(readRes.event?.type, 'message.read');

    // Her own second tab gets both, and its unread count resets.
    const ownRead = await tab2Read;
    assert.equal(ownRead.user?.id, aliceId);
    const markRead = await tab2MarkRead;
    assert.equal(markRead.unread_count ?? 0, 0, `notification.mark_read: ${JSON.stringify(markRead)}`);
    assert.equal(aliceChan2.countUnread(), 0, 'tab 2 unread count must reset');
    assert.ok(aliceChan2.state.read[aliceId], 'tab 2 has Alice\'s own read state');

    // Barrier on Bob's connection (Bob's own message: no read inference about Alice).
    await sentinel(bobChan, [bob]);
    bobReads.stop();
    assert.deepEqual(
      bobReads.events.filter((e) => e.user?.id === aliceId),
      [],
      'Bob must not get message.read from Alice',
    );
    assert.equal(bobChan.state.read[aliceId], undefined, 'Bob\'s state must have no read entry for Alice');
    await droppedAtLeast({ reason: 'privacy', type: 'message.read' }, droppedRead + 1);

    // REST read[]: the upstream has Alice's entry (it does no filtering); the
    // gateway removes it for Bob, keeps it for Alice herself.
    const direct = await channelQuery(cfg.emulatorUrl, channelId, bobId);
    const aliceUpstream = direct.read?.find((r) => r.user?.id === aliceId);
    assert.ok(aliceUpstream, `control: upstream read[] has Alice: ${JSON.stringify(direct.read)}`);
    assert.equal(aliceUpstream.last_read_message_id, m1.id, 'control: upstream has Alice\'s markRead');

    const viaGw = await channelQuery(cfg.gatewayUrl, channelId, bobId);
    assert.deepEqual(readUsers(viaGw.read), [bobId], 'channel query for Bob: only Bob\'s own read entry');
    const listed = await queryChannels(cfg.gatewayUrl, cid, bobId);
    assert.equal(listed.channels?.length, 1);
    assert.deepEqual(readUsers(listed.channels[0].read), [bobId], 'queryChannels for Bob: only Bob\'s read entry');

    const forAlice = await channelQuery(cfg.gatewayUrl, channelId, aliceId);
    assert.deepEqual(readUsers(forAlice.read), [aliceId, bobId].sort(), 'Alice keeps her own entry and sees Bob\'s');
    assert.equal(forAlice.read.find((r) => r.user?.id === aliceId).last_read_message_id, m1.id);
    await droppedAtLeast({ reason: 'privacy_read_state' }, droppedState + 2);

    // The SDK on a fresh Bob session: watch (and a fresh query) expose no Alice.
    const { client: bob2 } = await connect(bobId);
    const bob2Chan = bob2.channel('messaging', channelId);
    const watched = await bob2Chan.watch();
    assert.deepEqual(readUsers(watched.read), [bobId]);
    assert.equal(bob2Chan.state.read[aliceId], undefined);
    assert.ok(bob2Chan.state.read[bobId], 'control: own read state is there');
    const queried = await bob2Chan.query({ state: true, watch: false });
    assert.deepEqual(readUsers(queried.read), [bobId]);
    assert.equal(bob2Chan.state.read[aliceId], undefined);

    // Bob's reads are visible to Alice.
    const aliceSeesBobRead = waitForEvent(alice, 'message.read', (e) => e.cid === cid && e.user?.id === bobId);
    const bobRes = await bobChan.markRead();
    assert.ok(bobRes, 'Bob markRead() skipped by the SDK');
    await aliceSeesBobRead;
    assert.ok(aliceChan.state.read[bobId], 'Alice\'s state has Bob\'s read entry');
  });

  test('settings change live: upsertUser turns Alice\'s typing on, partialUpdateUser flips it back and reads on', TEST_OPTS, async () => {
    const { aliceId, channelId, cid, alice, aliceChan, bob, bobChan } = await room();

    // Before: hidden (upstream-injected typing).
    let bobEvents = recorder(bob, [...TYPING, 'message.read']);
    const own = waitForEvent(alice, 'typing.start', (e) => e.cid === cid && e.user?.id === aliceId);
    await injectTyping(channelId, aliceId, 'typing.start');
    await own;
    await sentinel(aliceChan, [bob]);
    bobEvents.stop();
    assert.deepEqual(bobEvents.events.filter((e) => e.user?.id === aliceId), [], 'before the change: hidden');

    // Alice switches typing on (reads stay off) through the gateway.
    const upserted = await alice.upsertUser({
      id: aliceId,
      privacy_settings: { typing_indicators: { enabled: true }, read_receipts: { enabled: false } },
    });
    assert.equal(upserted.users?.[aliceId]?.privacy_settings?.typing_indicators?.enabled, true);

    // Now Bob sees her typing: from her own client (outbound no longer
    // swallowed) and from the upstream (inbound no longer dropped).
    let bobSees = waitForEvent(bob, 'typing.start', (e) => e.cid === cid && e.user?.id === aliceId);
    const ack = await aliceChan.sendEvent({ type: 'typing.start' });
    assert.equal(ack.event?.type, 'typing.start');
    await bobSees;
    bobSees = waitForEvent(bob, 'typing.stop', (e) => e.cid === cid && e.user?.id === aliceId);
    await injectTyping(channelId, aliceId, 'typing.stop');
    await bobSees;

    // Reads are still hidden.
    bobEvents = recorder(bob, ['message.read']);
    const ownRead = waitForEvent(alice, 'message.read', (e) => e.cid === cid && e.user?.id === aliceId);
    assert.ok(await aliceChan.markRead(), 'markRead() skipped by the SDK');
    await ownRead;
    await sentinel(bobChan, [bob]);
    bobEvents.stop();
    assert.deepEqual(bobEvents.events.filter((e) => e.user?.id === aliceId), [], 'read receipts still off');

    // partialUpdateUser (PATCH /users): typing off again, read receipts on.
    await alice.partialUpdateUser({
      id: aliceId,
      set: { privacy_settings: { typing_indicators: { enabled: false }, read_receipts: { enabled: true } } },
    });
    bobEvents = recorder(bob, [...TYPING, 'message.read']);
    const swallowed = await aliceChan.sendEvent({ type: 'typing.start' });
    assert.equal(swallowed.event?.type, 'typing.start');
    const ownStart = waitForEvent(alice, 'typing.start', (e) => e.cid === cid && e.user?.id === aliceId);
    await injectTyping(channelId, aliceId, 'typing.start');
    await ownStart;
    const bobSeesRead = waitForEvent(bob, 'message.read', (e) => e.cid === cid && e.user?.id === aliceId);
    assert.ok(await aliceChan.markRead(), 'markRead() skipped by the SDK');
    await bobSeesRead;
    await sentinel(bobChan, [bob]);
    bobEvents.stop();
    assert.deepEqual(
      bobEvents.events.filter((e) => e.user?.id === aliceId).map((e) => e.type),
      ['message.read'],
      'after PATCH: typing hidden, read visible',
    );
    const forBob = await channelQuery(cfg.gatewayUrl, channelId, bob.userID);
    assert.ok(readUsers(forBob.read).includes(aliceId), 'read receipts on: Bob sees Alice\'s read entry');
  });

  test('a user the gateway never saw: settings are looked up upstream', TEST_OPTS, async () => {
    // Carol (hidden) and Dave (defaults) exist only upstream: created there by
    // a server-side client, never connected nor updated through the gateway.
    const server = upstreamServerClient();
    const carolId = uid('carol');
    const daveId = uid('dave');
    await server.upsertUsers([{ id: carolId, privacy_settings: HIDDEN }, { id: daveId }]);

    const bobId = uid('bob');
    const channelId = uid('priv-lookup');
    const { client: bob } = await connect(bobId);
    const bobChan = bob.channel('messaging', channelId, { members: [bobId] });
    await bobChan.watch();
    const cid = bobChan.cid;
    const lookupsOk = await metric('stream_edge_privacy_lookups_total', { outcome: 'ok' });
    const droppedTyping = await dropped({ reason: 'privacy', type: 'typing.start' });
    const droppedRead = await dropped({ reason: 'privacy', type: 'message.read' });

    const upstreamChan = server.channel('messaging', channelId);
    const bobEvents = recorder(bob, [...TYPING, 'message.read']);
    await injectTyping(channelId, carolId, 'typing.start');
    const carolRead = await upstreamChan.markRead({ user_id: carolId });
    assert.equal(carolRead?.event?.type, 'message.read', `control: upstream announced Carol's read: ${JSON.stringify(carolRead)}`);
    // Control: a never-seen user with the default settings is delivered.
    const bobSeesDave = waitForEvent(bob, 'typing.start', (e) => e.cid === cid && e.user?.id === daveId);
    const bobSeesDaveRead = waitForEvent(bob, 'message.read', (e) => e.cid === cid && e.user?.id === daveId);
    await injectTyping(channelId, daveId, 'typing.start');
    await upstreamChan.markRead({ user_id: daveId });
    await bobSeesDave;
    await bobSeesDaveRead;
    await sentinel(bobChan, [bob]);
    bobEvents.stop();
    assert.deepEqual(
      bobEvents.events.filter((e) => e.user?.id === carolId).map((e) => e.type),
      [],
      'Bob must get no typing nor read event of Carol (hidden upstream)',
    );
    await droppedAtLeast({ reason: 'privacy', type: 'typing.start' }, droppedTyping + 1);
    await droppedAtLeast({ reason: 'privacy', type: 'message.read' }, droppedRead + 1);
    assert.ok(
      (await metric('stream_edge_privacy_lookups_total', { outcome: 'ok' })) > lookupsOk,
      'the settings were learned by an upstream lookup',
    );
  });

  test('long-poll receiver: no typing nor read from Alice, sentinel and Bob\'s typing arrive', TEST_OPTS, async () => {
    const daveId = uid('dave-lp');
    const dave = await connectLongPoll(daveId);
    const { aliceId, bobId, channelId, cid, aliceChan, bobChan } = await room({ extraMembers: [daveId] });
    const daveChan = dave.channel('messaging', channelId);
    const watched = await daveChan.watch();
    assert.ok(!readUsers(watched.read).includes(aliceId), `long-poll watch read[]: ${JSON.stringify(readUsers(watched.read))}`);
    assert.equal(daveChan.state.read[aliceId], undefined);

    const droppedTyping = await dropped({ reason: 'privacy', type: 'typing.start' });
    const droppedRead = await dropped({ reason: 'privacy', type: 'message.read' });
    const daveEvents = recorder(dave, [...TYPING, 'message.read']);

    // Control: typing reaches the long-poll client at all.
    const daveSeesBob = waitForEvent(dave, 'typing.start', (e) => e.cid === cid && e.user?.id === bobId);
    await bobChan.keystroke();
    await daveSeesBob;

    await aliceChan.sendEvent({ type: 'typing.start' });
    await injectTyping(channelId, aliceId, 'typing.start');
    const m = (await bobChan.sendMessage({ text: `to read ${uid('m')}` })).message;
    assert.ok(await aliceChan.markRead({ message_id: m.id }), 'markRead() skipped by the SDK');

    await sentinel(bobChan, [dave]);
    daveEvents.stop();
    assert.deepEqual(
      daveEvents.events.filter((e) => e.user?.id === aliceId).map((e) => e.type),
      [],
      'the long-poll client must get no typing nor read event of Alice',
    );
    assert.ok(daveEvents.events.some((e) => e.type === 'typing.start' && e.user?.id === bobId));
    assert.equal(daveChan.state.read[aliceId], undefined);
    assert.equal(daveChan.state.typing[aliceId], undefined);
    assert.equal(dave.wsFallback?.isHealthy(), true, 'still on long-poll');

    await droppedAtLeast({ reason: 'privacy', type: 'typing.start' }, droppedTyping + 1);
    await droppedAtLeast({ reason: 'privacy', type: 'message.read' }, droppedRead + 1);
  });
});
