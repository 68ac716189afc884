// The embedded upstream's moderation routes and the rest of its features (issue 17), driven by the
// real stream-chat SDK through the gateway: global and shadow bans and who hears them, flags,
// polls end to end, reminders, thread updates, reactions queries, messages by id and batch channel
// deletion. The Rust runner checks every upstream answer and event against Stream's OpenAPI spec.

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

async function pair(prefix) {
  const aliceId = uid(`${prefix}-alice`);
  const bobId = uid(`${prefix}-bob`);
  const { client: alice } = await connect(aliceId);
  const { client: bob } = await connect(bobId);
  const ca = alice.channel('messaging', uid(prefix), { members: [aliceId, bobId] });
  await ca.watch();
  const cb = bob.channel('messaging', ca.id);
  await cb.watch();
  return { alice, bob, aliceId, bobId, ca, cb };
}

/** Alice sends `text` and waits until it reaches both; later than anything queued before it. */
async function sentinel(ca, cb, text = uid('sentinel')) {
  const seen = [ca, cb].map((c) => waitForEvent(c, 'message.new', (e) => e.message?.text === text));
  await ca.sendMessage({ text });
  await Promise.all(seen);
}

describe('embedded upstream: bans and flags', () => {
  test('a global ban refuses the user and tells only them; unban lets them back', TEST_OPTS, async () => {
    const { alice, bob, bobId, ca, cb } = await pair('gban');
    const aliceSaw = recorder(alice, ['user.banned', 'user.unbanned']);
    const server = backend();
    const banned = waitForEvent(bob, 'user.banned');
    await server.banUser(bobId, { reason: 'spam', timeout: 60 });
    const ev = await banned;
    assert.equal(ev.user.id, bobId);
    assert.equal(ev.reason, 'spam');
    assert.ok(ev.expiration, 'a timed ban carries its expiration');
    await assert.rejects(cb.sendMessage({ text: 'let me in' }), /banned/);
    const { users } = await server.queryUsers({ id: bobId, banned: true });
    assert.deepEqual(users.map((u) => u.id), [bobId]);
    const { bans } = await server.queryBannedUsers({ user_id: bobId });
    assert.deepEqual(bans.map((b) => [b.user.id, b.reason]), [[bobId, 'spam']]);

    const unbanned = waitForEvent(bob, 'user.unbanned');
    await server.unbanUser(bobId);
    await unbanned;
    assert.deepEqual((await server.queryBannedUsers({ user_id: bobId })).bans, []);
    await cb.sendMessage({ text: 'back' });
    await sentinel(ca, cb);
    assert.deepEqual(aliceSaw.events, [], 'a global ban is told to the banned user only');
  });

  test('a shadow ban lets the user post and is told to nobody; only a server token sees it', TEST_OPTS, async () => {
    const { alice, bob, bobId, ca, cb } = await pair('shadow');
    const heard = [recorder(alice, ['user.banned']), recorder(bob, ['user.banned'])];
    const aliceMessages = recorder(ca, ['message.new']);
    await backend().shadowBan(bobId);
    const { message } = await cb.sendMessage({ text: 'unaware' });
    assert.equal(message.shadowed, true);
    await sentinel(ca, cb);
    assert.deepEqual(heard.flatMap((r) => r.events), []);
    assert.ok(
      aliceMessages.events.every((e) => e.message?.text !== 'unaware'),
      'a shadow-banned user’s message is theirs alone',
    );
    const asServer = await backend().queryUsers({ id: bobId, shadow_banned: true });
    assert.deepEqual(asServer.users.map((u) => u.id), [bobId]);
    const asAlice = await alice.queryUsers({ id: bobId });
    assert.equal(asAlice.users[0].shadow_banned, false, 'invisible to users');
    await backend().removeShadowBan(bobId);
    const after = await backend().queryUsers({ id: bobId, shadow_banned: true });
    assert.deepEqual(after.users, []);
  });

  test('flagMessage, flagUser, unflagMessage', TEST_OPTS, async () => {
    const { alice, bobId, cb } = await pair('flag');
    const { message } = await cb.sendMessage({ text: 'rude' });
    const { flag } = await alice.flagMessage(message.id, { reason: 'rude' });
    assert.equal(flag.target_message_id, message.id);
    const byUser = await alice.flagUser(bobId);
    assert.equal(byUser.flag.target_user.id, bobId);
    await alice.unflagMessage(message.id);
    await assert.rejects(alice.flagMessage('no-such-message'), (e) => e.code === 16 || e.status === 404);
  });
});

describe('embedded upstream: polls, reminders, threads, reactions', () => {
  test('poll lifecycle: get, query, update, options, votes, remove a vote, delete', TEST_OPTS, async () => {
    const { alice, bob, ca } = await pair('poll');
    const { poll } = await alice.createPoll({ name: 'Lunch?', options: [{ text: 'pizza' }], enforce_unique_vote: true });
    const { message } = await ca.sendMessage({ text: 'vote', poll_id: poll.id });
    const { poll_option: sushi } = await alice.createPollOption(poll.id, { text: 'sushi' });
    assert.equal((await alice.getPollOption(poll.id, sushi.id)).poll_option.text, 'sushi');
    await alice.updatePollOption(poll.id, { id: sushi.id, text: 'ramen' });
    const got = await bob.getPoll(poll.id);
    assert.deepEqual(got.poll.options.map((o) => o.text).sort(), ['pizza', 'ramen']);

    const { vote } = await bob.castPollVote(message.id, poll.id, { option_id: sushi.id });
    const votes = await alice.queryPollVotes(poll.id, { option_id: sushi.id });
    assert.deepEqual(votes.votes.map((v) => v.id), [vote.id]);
    const removed = waitForEvent(alice, 'poll.vote_removed');
    await bob.removePollVote(message.id, poll.id, vote.id);
    assert.equal((await removed).poll_vote.id, vote.id);
    assert.equal((await alice.getPoll(poll.id)).poll.vote_count, 0);

    await alice.updatePoll({ id: poll.id, name: 'Dinner?', options: [{ text: 'pizza' }] });
    const { polls } = await alice.queryPolls({ id: poll.id });
    assert.equal(polls[0].name, 'Dinner?');
    await alice.deletePollOption(poll.id, polls[0].options[0].id);
    await alice.deletePoll(poll.id);
    await assert.rejects(alice.getPoll(poll.id), (e) => e.code === 16 || e.status === 404);
  });

  test('updateReminder, partialUpdateThread, queryReactions, getMessagesById', TEST_OPTS, async () => {
    const { alice, bob, ca, cb } = await pair('feat');
    const { message } = await ca.sendMessage({ text: 'root' });
    await alice.createReminder({ messageId: message.id, remind_at: new Date(Date.now() + 3600_000).toISOString() });
    const later = new Date(Date.now() + 7200_000);
    const updated = waitForEvent(alice, 'reminder.updated');
    const { reminder } = await alice.updateReminder({ messageId: message.id, remind_at: later.toISOString() });
    assert.equal(new Date(reminder.remind_at).getTime(), later.getTime());
    await updated;

    await cb.sendMessage({ text: 'reply', parent_id: message.id });
    const threadUpdated = waitForEvent(alice, 'thread.updated');
    const { thread } = await alice.partialUpdateThread(message.id, { set: { title: 'Plans' } });
    assert.equal(thread.title, 'Plans');
    assert.equal((await threadUpdated).thread.title, 'Plans');

    await cb.sendReaction(message.id, { type: 'love' });
    await ca.sendReaction(message.id, { type: 'like' });
    const { reactions } = await alice.queryReactions(message.id, { type: 'love' });
    assert.deepEqual(reactions.map((r) => r.user_id), [bob.userID]);

    const { messages } = await ca.getMessagesById([message.id]);
    assert.deepEqual(messages.map((m) => m.text), ['root']);
  });

  test('deleteChannels removes several channels and tells their watchers', TEST_OPTS, async () => {
    const { alice, ca, cb } = await pair('batch');
    const other = alice.channel('messaging', uid('batch2'), { members: [alice.userID] });
    await other.watch();
    const deleted = waitForEvent(cb, 'channel.deleted');
    await backend().deleteChannels([ca.cid, other.cid], { hard_delete: true });
    assert.equal((await deleted).cid, ca.cid);
    const left = await alice.queryChannels({ cid: { $in: [ca.cid, other.cid] } });
    assert.deepEqual(left, []);
  });
});
