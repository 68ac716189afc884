// The embedded upstream's later additions (issue 17), driven by the real stream-chat SDK through
// the gateway: deleting a message for oneself and undeleting, thread unread counts, a block
// silencing the blocked user in a one-to-one channel, system messages on channel update and
// truncate, and a reminder falling due. The Rust runner checks every upstream answer and event
// against Stream's OpenAPI spec.

import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamChat } from 'stream-chat';

import { TEST_OPTS, cfg, cleanup, connect, recorder, requireEnv, uid, waitForEvent } from './lib.mjs';

before(() => requireEnv());
afterEach(cleanup);
after(cleanup);

function backend() {
  return new StreamChat(cfg.apiKey, cfg.apiSecret, { baseURL: cfg.gatewayUrl, timeout: 6000, enableInsights: false });
}

async function pair(prefix, extra = []) {
  const aliceId = uid(`${prefix}-alice`);
  const bobId = uid(`${prefix}-bob`);
  const { client: alice } = await connect(aliceId);
  const { client: bob } = await connect(bobId);
  const ca = alice.channel('messaging', uid(prefix), { members: [aliceId, bobId, ...extra] });
  await ca.watch();
  const cb = bob.channel('messaging', ca.id);
  await cb.watch();
  return { alice, bob, aliceId, bobId, ca, cb };
}

/** Alice sends `text` and waits until both channels have it: later than anything queued before. */
async function sentinel(ca, cb, text = uid('sentinel')) {
  const seen = [ca, cb].map((c) => waitForEvent(c, 'message.new', (e) => e.message?.text === text));
  await ca.sendMessage({ text });
  await Promise.all(seen);
}

describe('embedded upstream: deletion', () => {
  test('deleteMessage for me hides it from the caller only; undelete brings a deletion back', TEST_OPTS, async () => {
    const { alice, bob, ca, cb } = await pair('forme');
    const { message } = await ca.sendMessage({ text: 'mine to forget' });
    const aliceSaw = recorder(ca, ['message.deleted']);
    const gone = waitForEvent(cb, 'message.deleted');
    const res = await bob.deleteMessage(message.id, { deleteForMe: true });
    assert.equal(res.message.deleted_for_me, true);
    assert.equal((await gone).deleted_for_me, true);
    await sentinel(ca, cb);
    assert.deepEqual(aliceSaw.events, [], 'the others hear nothing');
    const forBob = await cb.query({ messages: { limit: 10 } });
    assert.equal(forBob.messages.find((m) => m.id === message.id).type, 'deleted');
    const forAlice = await ca.query({ messages: { limit: 10 } });
    assert.equal(forAlice.messages.find((m) => m.id === message.id).text, 'mine to forget');

    const { message: oops } = await ca.sendMessage({ text: 'oops' });
    await alice.deleteMessage(oops.id);
    const back = waitForEvent(cb, 'message.undeleted');
    const undone = await backend().undeleteMessage(oops.id, alice.userID);
    assert.equal(undone.message.text, 'oops');
    assert.equal((await back).message.id, oops.id);
    assert.equal(cb.state.messages.find((m) => m.id === oops.id)?.type, 'regular');
  });
});

describe('embedded upstream: thread unread counts', () => {
  test('a reply is unread for the parent’s author until the thread is read', TEST_OPTS, async () => {
    const { alice, ca, cb } = await pair('tread');
    const { message: parent } = await ca.sendMessage({ text: 'plans?' });
    const notified = waitForEvent(alice, 'message.new', (e) => e.message?.parent_id === parent.id);
    await cb.sendMessage({ text: 'friday', parent_id: parent.id });
    await notified;
    const counts = await alice.getUnreadCount();
    assert.equal(counts.total_unread_threads_count, 1);
    assert.deepEqual(counts.threads.map((t) => [t.parent_message_id, t.unread_count]), [[parent.id, 1]]);

    const read = waitForEvent(alice, 'notification.mark_read', (e) => e.thread_id === parent.id);
    await ca.markRead({ thread_id: parent.id });
    assert.equal((await read).unread_threads, 0);
    assert.equal((await alice.getUnreadCount()).total_unread_threads_count, 0);
  });
});

describe('embedded upstream: blocks and system messages', () => {
  test('a block silences the blocked user in a one-to-one channel and drops it from the list', TEST_OPTS, async () => {
    const { alice, bobId, ca, cb } = await pair('block');
    await alice.blockUser(bobId);
    const heard = recorder(ca, ['message.new', 'typing.start']);
    await cb.sendMessage({ text: 'psst' });
    await cb.keystroke();
    // Alice's own message is the sentinel on her side: later than anything bob's could be.
    const own = waitForEvent(ca, 'message.new', (e) => e.message?.text === 'mine');
    await ca.sendMessage({ text: 'mine' });
    await own;
    assert.deepEqual(heard.events.map((e) => e.message?.text ?? e.type), ['mine']);
    const listed = await alice.queryChannels({ cid: ca.cid });
    assert.deepEqual(listed, [], 'a blocked one-to-one channel leaves the list');
    await alice.unBlockUser(bobId);
    const again = waitForEvent(ca, 'message.new', (e) => e.message?.text === 'again');
    await cb.sendMessage({ text: 'again' });
    await again;
  });

  test('update and truncate with a message send it as a system message', TEST_OPTS, async () => {
    const { ca, cb } = await pair('notice');
    const renamed = waitForEvent(cb, 'message.new', (e) => e.message?.type === 'system');
    await ca.update({ name: 'Lobby' }, { text: 'Alice renamed the room' });
    assert.equal((await renamed).message.text, 'Alice renamed the room');
    const cleared = waitForEvent(cb, 'message.new', (e) => e.message?.text === 'History cleared');
    await ca.truncate({ message: { text: 'History cleared' } });
    await cleared;
    const { messages } = await cb.query({ messages: { limit: 10 } });
    assert.deepEqual(messages.map((m) => [m.type, m.text]), [['system', 'History cleared']]);
  });
});

describe('embedded upstream: distinct channels and images', () => {
  test('a channel without an id is the members’ one distinct channel; sendImage, deleteImage', TEST_OPTS, async () => {
    const aliceId = uid('distinct-alice');
    const bobId = uid('distinct-bob');
    const { client: alice } = await connect(aliceId);
    const { client: bob } = await connect(bobId);
    const first = alice.channel('messaging', { members: [aliceId, bobId] });
    await first.watch();
    const again = bob.channel('messaging', { members: [bobId, aliceId] });
    await again.watch();
    assert.ok(first.cid, 'the server gave the channel an id');
    assert.equal(again.cid, first.cid, 'the same members make the same channel');

    const bytes = Buffer.from('\x89PNG\r\n\x1a\n tiny', 'latin1');
    const { file } = await first.sendImage(bytes, 'dot.png', 'image/png');
    assert.equal((await fetch(file)).status, 200);
    await first.deleteImage(file);
    assert.equal((await fetch(file)).status, 404);
  });
});

describe('embedded upstream: reminders', () => {
  test('a reminder falls due for its owner', TEST_OPTS, async () => {
    const { alice, ca } = await pair('due');
    const { message } = await ca.sendMessage({ text: 'in a moment' });
    const due = waitForEvent(alice, 'notification.reminder_due');
    await alice.createReminder({ messageId: message.id, remind_at: new Date(Date.now() + 1000).toISOString() });
    const ev = await due;
    assert.equal(ev.message_id, message.id);
    assert.equal(ev.user_id, alice.userID);
  });
});
