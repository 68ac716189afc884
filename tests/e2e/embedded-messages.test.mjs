// The embedded upstream's message routes, driven by the real SDK through the gateway: edit, pin
// and delete (message.updated / message.deleted), history scroll-back, reactions (with per-user
// own_reactions), search, uploads served back at their URL, and polls.
//
// Every test makes its own users and channel; it waits for events, never sleeps.

import assert from 'node:assert/strict';
import { after, afterEach, describe, test } from 'node:test';

import { TEST_OPTS, cleanup, connect, uid, waitForEvent } from './lib.mjs';

/** Alice and Bob connected, both watching one new channel of theirs. */
async function pair() {
  const a = await connect(uid('alice'));
  const b = await connect(uid('bob'));
  const id = uid('room');
  const ca = a.client.channel('messaging', id, { members: [a.client.userID, b.client.userID] });
  await ca.watch();
  const cb = b.client.channel('messaging', id);
  await cb.watch();
  return { alice: a.client, bob: b.client, ca, cb };
}

describe('embedded upstream: messages, reactions, search, uploads, polls', () => {
  afterEach(cleanup);
  after(cleanup);

  test('edit, pin and delete reach the other watcher', TEST_OPTS, async () => {
    const { alice, ca, cb } = await pair();
    const { message } = await ca.sendMessage({ text: 'first draft' });

    let seen = waitForEvent(cb, 'message.updated');
    await alice.updateMessage({ ...message, text: 'final text' });
    assert.equal((await seen).message.text, 'final text');
    assert.equal(cb.state.messages.at(-1).text, 'final text');

    seen = waitForEvent(cb, 'message.updated', (e) => e.message.pinned);
    await alice.pinMessage(message);
    await seen;
    const pinned = await cb.getPinnedMessages({ limit: 5 });
    assert.deepEqual(pinned.messages.map((m) => m.id), [message.id]);
    const got = await alice.getMessage(message.id);
    assert.equal(got.message.pinned, true);
    assert.equal(got.message.channel.cid, ca.cid);

    seen = waitForEvent(cb, 'message.deleted');
    await alice.deleteMessage(message.id);
    const deleted = await seen;
    assert.equal(deleted.message.type, 'deleted');
    assert.equal(cb.state.messages.at(-1).type, 'deleted');
  });

  test('scroll-back pages older messages and ends empty', TEST_OPTS, async () => {
    const { ca, cb } = await pair();
    for (let i = 0; i < 5; i++) await ca.sendMessage({ text: `m${i}` });
    const newest = await cb.query({ messages: { limit: 2 } });
    assert.deepEqual(newest.messages.map((m) => m.text), ['m3', 'm4']);
    const older = await cb.query({ messages: { limit: 2, id_lt: newest.messages[0].id } });
    assert.deepEqual(older.messages.map((m) => m.text), ['m1', 'm2']);
    const oldest = await cb.query({ messages: { limit: 2, id_lt: older.messages[0].id } });
    assert.deepEqual(oldest.messages.map((m) => m.text), ['m0']);
    const none = await cb.query({ messages: { limit: 2, id_lt: oldest.messages[0].id } });
    assert.deepEqual(none.messages, []);
  });

  test('reactions: counts for all, own reactions per user', TEST_OPTS, async () => {
    const { alice, bob, ca, cb } = await pair();
    const { message } = await ca.sendMessage({ text: 'react' });
    const seen = waitForEvent(ca, 'reaction.new');
    // Bob's own copy is updated by his own reaction.new: wait for it too.
    const seenByBob = waitForEvent(cb, 'reaction.new');
    await cb.sendReaction(message.id, { type: 'love' });
    const ev = await seen;
    await seenByBob;
    assert.equal(ev.reaction.user_id, bob.userID);
    const inAlice = ca.state.messages.find((m) => m.id === message.id);
    assert.equal(inAlice.reaction_counts.love, 1);
    assert.equal(inAlice.own_reactions.length, 0, 'not alice’s reaction');
    const inBob = cb.state.messages.find((m) => m.id === message.id);
    assert.equal(inBob.own_reactions[0]?.type, 'love');
    const list = await cb.getReactions(message.id, { limit: 10 });
    assert.equal(list.reactions.length, 1);

    const gone = waitForEvent(ca, 'reaction.deleted');
    await cb.deleteReaction(message.id, 'love');
    await gone;
    assert.equal(ca.state.messages.find((m) => m.id === message.id).reaction_counts.love ?? 0, 0);
    assert.ok(alice.userID);
  });

  test('search finds the caller’s messages', TEST_OPTS, async () => {
    const { bob, ca } = await pair();
    const word = uid('word');
    await ca.sendMessage({ text: `about ${word} today` });
    await ca.sendMessage({ text: 'unrelated' });
    const res = await bob.search({ cid: ca.cid }, word, { limit: 5 });
    assert.deepEqual(
      res.results.map((r) => r.message.text),
      [`about ${word} today`],
    );
  });

  test('an uploaded image is served back at its URL, then deleted', TEST_OPTS, async () => {
    const { ca } = await pair();
    const bytes = Buffer.from('\x89PNG\r\n\x1a\n not really an image', 'latin1');
    const res = await ca.sendFile(bytes, 'pic.png', 'image/png');
    assert.match(res.file, /\/uploads\/.+\/pic\.png$/);
    const served = await fetch(res.file);
    assert.equal(served.status, 200);
    assert.deepEqual(Buffer.from(await served.arrayBuffer()), bytes);
    await ca.deleteFile(res.file);
    assert.equal((await fetch(res.file)).status, 404);
  });

  test('polls: a vote reaches the other watcher', TEST_OPTS, async () => {
    const { alice, bob, ca, cb } = await pair();
    const { poll } = await alice.createPoll({
      name: 'Lunch?',
      options: [{ text: 'pizza' }, { text: 'sushi' }],
    });
    const { message } = await ca.sendMessage({ text: 'vote', poll_id: poll.id });
    assert.equal(message.poll.name, 'Lunch?');
    const seen = waitForEvent(alice, 'poll.vote_casted');
    const { vote } = await bob.castPollVote(message.id, poll.id, { option_id: poll.options[0].id });
    const ev = await seen;
    assert.equal(ev.poll_vote.id, vote.id);
    assert.equal(ev.poll.vote_counts_by_option[poll.options[0].id], 1);
    const closed = waitForEvent(bob, 'poll.closed');
    await alice.closePoll(poll.id);
    await closed;
    assert.ok(cb.cid);
  });
});
