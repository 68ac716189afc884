// gateway metric names used: stream_edge_sessions_open (gauge, label transport=ws|longpoll)
//
// Long-poll fallback (issue 4, stream-protocol.md §3): a client behind a proxy
// that refuses WebSocket upgrades uses `enableWSFallback`, falls back to
// `/longpoll` and still chats in real time with WebSocket users. The proxy is
// started by this file (lib.mjs `startWsBlockingProxy`) in front of the gateway.
//
// The SDK never sends typing in long-poll mode (§3), so only typing *received*
// by the long-poll client is asserted.

import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  TEST_OPTS,
  cleanup,
  connect,
  eventually,
  isMessage,
  longLivedToken,
  metric,
  newClient,
  pollEvents,
  recorder,
  requireEnv,
  startWsBlockingProxy,
  uid,
  upstreamCount,
  waitForEvent,
} from './lib.mjs';

const SESSIONS_OPEN = 'stream_edge_sessions_open';

let proxy;

before(async () => {
  requireEnv();
  proxy = await startWsBlockingProxy();
});
afterEach(cleanup);
after(async () => {
  await cleanup();
  await proxy?.close();
});

/**
 * Connect `userId` through the upgrade-refusing proxy with `enableWSFallback`.
 * Resolves with { client, response, transport } once connectUser resolved and
 * the SDK announced the fallback (`transport.changed`).
 */
async function connectLongPoll(userId) {
  const client = newClient({ baseURL: proxy.url, enableWSFallback: true });
  const upgradesBefore = proxy.upgrades.length;
  // Subscribe before connecting: the SDK dispatches it before the first /longpoll request.
  const transportChanged = waitForEvent(client, 'transport.changed', () => true, 15_000);
  const response = await client.connectUser({ id: userId, name: userId }, longLivedToken(userId));
  const transport = await transportChanged;

  assert.equal(transport.mode, 'longpoll', `transport.changed: ${JSON.stringify(transport)}`);
  assert.ok(
    proxy.upgrades.length > upgradesBefore,
    'the SDK must have tried a WebSocket first (and been refused by the proxy)',
  );
  assert.ok(client.wsFallback, 'client.wsFallback must exist after the fallback');
  assert.equal(client.wsFallback.isHealthy(), true, 'long-poll connection must be healthy');
  assert.equal(client.wsConnection?.isHealthy ?? false, false, 'the refused WS must not be in use');
  assert.equal(response?.me?.id, userId, 'connectUser resolves with the long-poll health.check carrying me');
  assert.equal(typeof response.connection_id, 'string');
  assert.equal(client.wsFallback.connectionID, response.connection_id);
  return { client, response, transport };
}

/** bob (WebSocket) creates a channel with [aliceId, bobId]; both sides watch it. */
async function sharedChannel(bob, bobId, aliceClients, aliceId) {
  const channelId = uid('lp');
  const bobChan = bob.channel('messaging', channelId, { members: [aliceId, bobId] });
  await bobChan.watch();
  const aliceChans = [];
  for (const c of aliceClients) {
    const ch = c.channel('messaging', channelId);
    await ch.watch();
    aliceChans.push(ch);
  }
  return { bobChan, aliceChans, cid: bobChan.cid };
}

/** Did a relayed poll response of `connectionId` carry the message `id`? */
const pollCarried = (connectionId, id) => (e) =>
  e.kind === 'poll' &&
  e.query.connection_id === connectionId &&
  pollEvents(e).some((ev) => ev.type === 'message.new' && ev.message?.id === id);

describe('long-poll fallback behind a proxy that refuses WebSockets', () => {
  test('falls back, receives message/typing/read from a WebSocket user, sends messages', TEST_OPTS, async () => {
    const aliceId = uid('alice-lp');
    const bobId = uid('bob-ws');

    const { client: alice, response } = await connectLongPoll(aliceId);
    const connectReq = proxy.ofKind('longpoll-connect').find((e) => e.query.user_id === aliceId);
    assert.ok(connectReq, 'the long-poll connect went through the proxy');
    assert.equal(connectReq.status, 200);
    await eventually(
      () => proxy.ofKind('poll').some((e) => e.query.connection_id === response.connection_id),
      { what: 'a poll with the long-poll connection_id reaches the proxy' },
    );

    const { client: bob } = await connect(bobId); // directly, over WebSocket
    assert.equal(bob.wsConnection?.isHealthy, true);

    const {
      bobChan,
      aliceChans: [aliceChan],
      cid,
    } = await sharedChannel(bob, bobId, [alice], aliceId);

    // bob -> alice: message.new, delivered in a poll response.
    const text = `from bob ${uid('m')}`;
    const aliceGot = waitForEvent(alice, 'message.new', isMessage(cid, { text }));
    const sent = await bobChan.sendMessage({ text });
    const polled = proxy.waitForResponse(pollCarried(response.connection_id, sent.message.id), {
      what: 'a poll response carrying bob message',
    });
    const ev = await aliceGot;
    assert.equal(ev.user?.id, bobId);
    assert.equal(ev.message.id, sent.message.id);
    // The event may have been relayed before `polled` subscribed: check the log too.
    const carried = proxy.log.find(pollCarried(response.connection_id, sent.message.id)) ?? (await polled);
    assert.equal(carried.status, 200);

    // bob keystroke -> alice typing.start (received over long-poll).
    assert.equal(bobChan.getConfig()?.typing_events, true, 'channel config must enable typing events');
    const aliceSeesTyping = waitForEvent(alice, 'typing.start', (e) => e.cid === cid && e.user?.id === bobId);
    await bobChan.keystroke();
    const typing = await aliceSeesTyping;
    assert.equal(typing.channel_id, bobChan.id);
    await bobChan.stopTyping();

    // bob markRead -> alice message.read.
    assert.equal(bobChan.getConfig()?.read_events, true, 'channel config must enable read events');
    const aliceSeesRead = waitForEvent(alice, 'message.read', (e) => e.cid === cid && e.user?.id === bobId);
    const readRes = await bobChan.markRead();
    assert.ok(readRes, 'markRead() made a request');
    await aliceSeesRead;

    // alice (long-poll; REST through the proxy) -> bob.
    const reply = `from alice ${uid('m')}`;
    const bobGot = waitForEvent(bob, 'message.new', isMessage(cid, { text: reply }));
    const sentReply = await aliceChan.sendMessage({ text: reply });
    const got = await bobGot;
    assert.equal(got.user?.id, aliceId);
    assert.equal(got.message.id, sentReply.message.id);

    // Every long-poll exchange so far succeeded; nothing was refused but the upgrades.
    const failed = proxy.log.filter((e) => e.kind !== 'preflight' && e.status !== undefined && e.status >= 400);
    assert.deepEqual(
      failed.map((e) => `${e.method} ${e.path} -> ${e.status} ${e.body ?? ''}`),
      [],
      'no proxied request may fail',
    );
  });

  test('a message sent between two polls arrives on the next poll; one upstream with a WS session of the same user', TEST_OPTS, async () => {
    const aliceId = uid('alice-mix');
    const bobId = uid('bob-ws');

    const { client: aliceLp, response } = await connectLongPoll(aliceId);
    const { client: aliceWs } = await connect(aliceId); // second session of alice, WebSocket, direct
    const { client: bob } = await connect(bobId);

    // Both of alice's sessions (long-poll + WebSocket) share ONE upstream connection.
    assert.ok((await metric(SESSIONS_OPEN, { transport: 'longpoll' })) >= 1, 'a long-poll session is open');
    await eventually(async () => (await upstreamCount(aliceId)) >= 1, {
      what: `an upstream connection for ${aliceId}`,
    });
    assert.equal(await upstreamCount(aliceId), 1, 'long-poll and WS sessions of one user share one upstream');

    const {
      bobChan,
      aliceChans: [aliceLpChan],
      cid,
    } = await sharedChannel(bob, bobId, [aliceLp, aliceWs], aliceId);
    assert.equal(aliceLpChan.cid, cid);

    // 1. bob sends `first`; the poll response that carries it arms the
    //    proxy, which then holds alice's NEXT poll: alice is between polls.
    const first = `first ${uid('m')}`;
    const gate = proxy.holdPollAfter(
      (e) =>
        e.query.connection_id === response.connection_id &&
        pollEvents(e).some((ev) => ev.type === 'message.new' && ev.message?.text === first),
    );
    const lpGotFirst = waitForEvent(aliceLp, 'message.new', isMessage(cid, { text: first }));
    await bobChan.sendMessage({ text: first });
    await lpGotFirst;
    const heldPoll = await gate.held;
    assert.equal(heldPoll.query.connection_id, response.connection_id);
    assert.equal(heldPoll.forwardedAt, undefined, 'the next poll is held in the proxy, not at the gateway');

    // 2. bob sends `between` while no poll of alice is at the gateway.
    const between = `between polls ${uid('m')}`;
    const lpRec = recorder(aliceLp, ['message.new']);
    const wsGot = waitForEvent(aliceWs, 'message.new', isMessage(cid, { text: between }));
    const lpGot = waitForEvent(aliceLp, 'message.new', isMessage(cid, { text: between }), 15_000);
    const nextPoll = proxy.waitForResponse((e) => e === heldPoll, {
      timeoutMs: 15_000,
      what: 'the response to the held poll',
    });
    const sent = await bobChan.sendMessage({ text: between });
    // alice's WS session got it: the event went through alice's (shared) upstream.
    await wsGot;
    assert.equal(lpRec.ofType('message.new').length, 0, 'the long-poll client cannot have it while its poll is held');

    // 3. release the held poll: the queued event is answered on it, promptly.
    gate.release();
    const ev = await lpGot;
    lpRec.stop();
    assert.equal(ev.message.id, sent.message.id);
    const answered = await nextPoll;
    assert.equal(answered.status, 200, `held poll answered ${answered.status}: ${answered.body}`);
    assert.ok(
      pollEvents(answered).some((e) => e.type === 'message.new' && e.message?.id === sent.message.id),
      `the event must be in the very next poll response; got ${answered.body?.slice(0, 500)}`,
    );
    const waitedMs = answered.endedAt - answered.forwardedAt;
    assert.ok(waitedMs < 5000, `a queued event is answered at once, not after the hold (took ${waitedMs} ms)`);

    // Still one upstream connection for alice after all of this.
    assert.equal(await upstreamCount(aliceId), 1);
  });
});
