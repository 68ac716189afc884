// Gateway basics, driven by the real stream-chat SDK: connect/auth, events
// through one channel, typing, read receipts, token refresh, REST proxying.
// (This file reads no gateway metrics.)

import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  TEST_OPTS,
  cleanup,
  connect,
  connectError,
  isMessage,
  longLivedToken,
  mintToken,
  newClient,
  nowSeconds,
  requireEnv,
  uid,
  waitForEvent,
} from './lib.mjs';

before(() => requireEnv());
afterEach(cleanup);
after(cleanup);

describe('core', () => {
  test('two users: connect, message.new, typing, read', TEST_OPTS, async () => {
    const aliceId = uid('alice');
    const bobId = uid('bob');
    const channelId = uid('core');

    const { client: alice, response: aliceRes } = await connect(aliceId);
    const { client: bob, response: bobRes } = await connect(bobId);

    // connectUser resolves with the first frame: health.check with me + connection_id.
    assert.equal(aliceRes.me?.id, aliceId);
    assert.equal(bobRes.me?.id, bobId);
    assert.equal(typeof aliceRes.connection_id, 'string');
    assert.ok(aliceRes.connection_id.length > 0, 'connection_id must be non-empty');
    assert.equal(typeof bobRes.connection_id, 'string');
    assert.ok(bobRes.connection_id.length > 0, 'connection_id must be non-empty');
    assert.notEqual(aliceRes.connection_id, bobRes.connection_id);
    // The SDK loops over these; they must be arrays (protocol §1.3).
    assert.ok(Array.isArray(aliceRes.me.mutes), 'me.mutes must be an array');
    assert.ok(Array.isArray(aliceRes.me.channel_mutes), 'me.channel_mutes must be an array');
    assert.equal(alice.user?.id, aliceId);

    const aliceChan = alice.channel('messaging', channelId, { members: [aliceId, bobId] });
    await aliceChan.watch();
    const bobChan = bob.channel('messaging', channelId);
    const bobState = await bobChan.watch();
    const cid = aliceChan.cid;
    assert.equal(cid, `messaging:${channelId}`);
    assert.equal(bobState.channel?.cid, cid);
    const memberIds = (bobState.members ?? []).map((m) => m.user_id ?? m.user?.id).sort();
    assert.deepEqual(memberIds, [aliceId, bobId].sort());

    // alice -> bob: message.new
    const text = `hello from alice ${uid('m')}`;
    const bobGotMessage = waitForEvent(bob, 'message.new', isMessage(cid, { text }));
    const sent = await aliceChan.sendMessage({ text });
    assert.equal(sent.message?.text, text);
    const ev = await bobGotMessage;
    assert.equal(ev.user?.id, aliceId);
    assert.equal(ev.message.id, sent.message.id);

    // bob keystroke -> alice typing.start from bob. The SDK only sends typing
    // when the query response's channel.config.typing_events is true and the
    // WS is healthy; otherwise keystroke() is a silent no-op.
    assert.equal(
      bobChan.getConfig()?.typing_events,
      true,
      'query response must carry channel.config.typing_events=true or the SDK never sends typing',
    );
    const aliceSeesTyping = waitForEvent(alice, 'typing.start', (e) => e.cid === cid && e.user?.id === bobId);
    const aliceSeesStop = waitForEvent(alice, 'typing.stop', (e) => e.cid === cid && e.user?.id === bobId);
    await bobChan.keystroke();
    const typing = await aliceSeesTyping;
    assert.equal(typing.channel_id, channelId);
    await bobChan.stopTyping();
    await aliceSeesStop;

    // bob markRead -> alice: message.read from bob; bob: notification.mark_read.
    assert.equal(
      bobChan.getConfig()?.read_events,
      true,
      'query response must carry channel.config.read_events=true or the SDK never sends markRead',
    );
    const aliceSeesRead = waitForEvent(alice, 'message.read', (e) => e.cid === cid && e.user?.id === bobId);
    const bobSeesMarkRead = waitForEvent(bob, 'notification.mark_read', (e) => e.cid === cid);
    const readRes = await bobChan.markRead();
    assert.ok(
      readRes,
      'markRead() returned null: the SDK skipped the request (config.read_events or own_capabilities lacks "read-events")',
    );
    const readEv = await aliceSeesRead;
    assert.equal(readEv.channel_id, channelId);
    const markRead = await bobSeesMarkRead;
    assert.equal(markRead.type, 'notification.mark_read');
  });

  test('token provider: expired first token is refreshed (code 40) and the session works', TEST_OPTS, async () => {
    const userId = uid('erin');
    let calls = 0;
    const provider = async () => {
      calls += 1;
      return calls === 1
        ? mintToken(userId, { exp: nowSeconds() - 60 }) // already expired
        : longLivedToken(userId);
    };

    const { client, response } = await connect(userId, { tokenProvider: provider });
    assert.equal(response.me?.id, userId);
    assert.ok(response.connection_id, 'connection_id after refresh');
    assert.ok(calls >= 2, `token provider must be called again after code 40 (called ${calls}x)`);
    assert.ok(client.connectLog.length >= 2, 'one WS attempt with the expired token, one after refresh');

    // The session works: watch, send, receive own message.new.
    const chan = client.channel('messaging', uid('prov'), { members: [userId] });
    await chan.watch();
    const text = `after refresh ${uid('m')}`;
    const got = waitForEvent(client, 'message.new', isMessage(chan.cid, { text }));
    await chan.sendMessage({ text });
    await got;
  });

  test('static expired token: connectUser rejects with code 40, not a WS failure', TEST_OPTS, async () => {
    const userId = uid('frank');
    const client = newClient();
    const expired = mintToken(userId, { exp: nowSeconds() - 60 });
    const err = await client.connectUser({ id: userId }, expired).then(
      () => assert.fail('connectUser must reject an expired static token'),
      (e) => e,
    );
    const parsed = connectError(err);
    assert.equal(parsed.code, 40, `expected code 40, got ${JSON.stringify(parsed)}`);
    assert.equal(parsed.isWSFailure, false, 'auth rejection must be an error frame + close 1000, not a network failure');
    assert.equal(client.connectLog.length, 1, 'a static token is never retried');
  });

  test('token signed with a wrong secret: rejects with code 43, no retry', TEST_OPTS, async () => {
    const userId = uid('grace');
    const client = newClient();
    const bad = mintToken(userId, { exp: nowSeconds() + 3600, secret: 'definitely-not-the-app-secret' });
    const started = Date.now();
    const err = await client.connectUser({ id: userId }, bad).then(
      () => assert.fail('connectUser must reject a token with a bad signature'),
      (e) => e,
    );
    const elapsed = Date.now() - started;
    const parsed = connectError(err);
    assert.equal(parsed.code, 43, `expected code 43, got ${JSON.stringify(parsed)}`);
    assert.equal(parsed.isWSFailure, false);
    // An HTTP 401 on the upgrade would look like a network failure: the SDK
    // would retry with backoff and only give up after its 15 s budget.
    assert.ok(elapsed < 5000, `rejection must be prompt (took ${elapsed} ms)`);
    assert.equal(client.connectLog.length, 1, 'exactly one WS connect attempt');

    // Barrier: a full connect + message round trip of another user through
    // the gateway. A retry by the rejected client would show up as a second
    // entry in its connect log.
    const other = uid('grace-ok');
    const { client: ok } = await connect(other);
    const chan = ok.channel('messaging', uid('barrier'), { members: [other] });
    await chan.watch();
    const text = `barrier ${uid('m')}`;
    const got = waitForEvent(ok, 'message.new', isMessage(chan.cid, { text }));
    await chan.sendMessage({ text });
    await got;
    assert.equal(client.connectLog.length, 1, 'the rejected client must not reconnect');
    assert.equal(client.wsConnection?.isHealthy ?? false, false);
  });

  test('disconnectUser closes cleanly', TEST_OPTS, async () => {
    const userId = uid('heidi');
    const { client } = await connect(userId);
    assert.equal(client.wsConnection?.isHealthy, true);
    const ws = client.wsConnection.ws;
    const started = Date.now();
    await client.disconnectUser(3000);
    // disconnect() sends close(1000) and resolves on the server's close frame
    // or after the 3 s timeout; only a completed close handshake leaves the
    // socket CLOSED.
    assert.equal(ws.readyState, ws.CLOSED, 'gateway must answer the close frame');
    assert.ok(Date.now() - started < 3000, 'disconnect resolved by the close frame, not by its timeout');
    assert.equal(client.userID, undefined);
    assert.equal(client.wsConnection?.isHealthy ?? false, false);
  });

  test('REST through the gateway: queryUsers, channel.query, upsertUser', TEST_OPTS, async () => {
    const ivanId = uid('ivan');
    const judyId = uid('judy');
    const { client: ivan } = await connect(ivanId, { user: { name: 'Ivan' } });
    await connect(judyId, { user: { name: 'Judy' } });

    // queryUsers: both users exist (connect upserts user_details).
    const users = await ivan.queryUsers({ id: { $in: [ivanId, judyId] } });
    const ids = users.users.map((u) => u.id).sort();
    assert.deepEqual(ids, [ivanId, judyId].sort());
    assert.equal(users.users.find((u) => u.id === judyId)?.name, 'Judy');

    // channel.query (create, no watch) then query again.
    const channelId = uid('rest');
    const chan = ivan.channel('messaging', channelId, { members: [ivanId, judyId] });
    const created = await chan.query({ watch: false, state: true });
    assert.equal(created.channel?.cid, `messaging:${channelId}`);
    await chan.sendMessage({ text: 'persisted' });
    const again = await chan.query({ watch: false, state: true, messages: { limit: 10 } });
    assert.ok(
      again.messages.some((m) => m.text === 'persisted'),
      'query must return the message sent before',
    );
    const members = again.members.map((m) => m.user_id ?? m.user?.id).sort();
    assert.deepEqual(members, [ivanId, judyId].sort());

    // upsertUser on oneself, visible through queryUsers.
    const upserted = await ivan.upsertUser({ id: ivanId, name: 'Ivan Renamed' });
    assert.equal(upserted.users?.[ivanId]?.name, 'Ivan Renamed');
    const after = await ivan.queryUsers({ id: { $eq: ivanId } });
    assert.equal(after.users[0]?.name, 'Ivan Renamed');
  });
});
