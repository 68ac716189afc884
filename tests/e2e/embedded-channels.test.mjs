// The embedded upstream's channel, read-state, moderation, draft, reminder and app routes
// (issue 17), driven by the real stream-chat SDK through the gateway: each SDK call succeeds, its
// answer has the fields the SDK and UI kits read, and the events reach the SDK's own state.

import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { TEST_OPTS, cleanup, connect, requireEnv, uid, waitForEvent } from './lib.mjs';

before(() => requireEnv());
afterEach(cleanup);
after(cleanup);

async function pair(prefix) {
  const aliceId = uid(`${prefix}-alice`);
  const bobId = uid(`${prefix}-bob`);
  const { client: alice } = await connect(aliceId);
  const { client: bob } = await connect(bobId);
  const channelId = uid(prefix);
  const aliceChan = alice.channel('messaging', channelId, { members: [aliceId, bobId], name: 'Room' });
  await aliceChan.watch();
  const bobChan = bob.channel('messaging', channelId);
  await bobChan.watch();
  return { alice, bob, aliceId, bobId, aliceChan, bobChan };
}

describe('embedded upstream: channels', () => {
  test('updatePartial, invites, moderators, pin, archive, queryMembers, mute, truncate, delete', TEST_OPTS, async () => {
    const { alice, bob, bobId, aliceChan, bobChan } = await pair('chan');

    const updated = waitForEvent(bobChan, 'channel.updated');
    await aliceChan.updatePartial({ set: { name: 'Lobby' } });
    await updated;
    assert.equal(bobChan.data.name, 'Lobby');

    const carolId = uid('chan-carol');
    const { client: carol } = await connect(carolId);
    const invited = waitForEvent(carol, 'notification.invited');
    await aliceChan.inviteMembers([carolId]);
    await invited;
    const carolChan = carol.channel('messaging', aliceChan.id);
    await carolChan.acceptInvite();
    const { members } = await aliceChan.queryMembers({ id: { $in: [carolId] } });
    assert.ok(members[0].invite_accepted_at, 'the invite is accepted');

    const promoted = waitForEvent(bobChan, 'member.updated');
    await aliceChan.addModerators([bobId]);
    assert.equal((await promoted).member.channel_role, 'channel_moderator');

    await aliceChan.pin();
    await aliceChan.archive();
    const pinned = await alice.queryChannels({ pinned: true, members: { $in: [alice.userID] } });
    assert.deepEqual(pinned.map((c) => c.cid), [aliceChan.cid]);
    assert.ok(aliceChan.state.membership.pinned_at);
    await aliceChan.unarchive();

    const muted = waitForEvent(alice, 'notification.channel_mutes_updated');
    await aliceChan.mute();
    await muted;
    assert.equal(aliceChan.muteStatus().muted, true);
    await aliceChan.unmute();

    await aliceChan.sendMessage({ text: 'soon gone' });
    const truncated = waitForEvent(bobChan, 'channel.truncated');
    await aliceChan.truncate();
    await truncated;
    assert.equal(bobChan.state.messages.length, 0);

    const deleted = waitForEvent(bobChan, 'channel.deleted');
    await aliceChan.delete();
    await deleted;
    assert.ok(bob.userID);
  });
});

describe('embedded upstream: read state', () => {
  test('markUnread, getUnreadCount, markAllRead, sync, delivery receipts', TEST_OPTS, async () => {
    const { alice, bob, aliceChan, bobChan } = await pair('read');
    const since = new Date().toISOString();
    await aliceChan.sendMessage({ text: 'one' });
    const { message: second } = await aliceChan.sendMessage({ text: 'two' });
    await bobChan.markRead();

    const unread = waitForEvent(bob, 'notification.mark_unread');
    await bobChan.markUnread({ message_id: second.id });
    assert.equal((await unread).unread_messages, 1);
    const counts = await bob.getUnreadCount();
    assert.equal(counts.total_unread_count, 1);

    await bob.markAllRead();
    assert.equal((await bob.getUnreadCount()).total_unread_count, 0);

    const { events } = await bob.sync([bobChan.cid], since);
    assert.deepEqual(events.map((e) => e.message?.text), ['one', 'two']);

    const delivered = waitForEvent(aliceChan, 'message.delivered');
    await bob.markChannelsDelivered({ latest_delivered_messages: [{ cid: bobChan.cid, id: second.id }] });
    assert.equal((await delivered).last_delivered_message_id, second.id);
    assert.ok(alice.userID);
  });
});

describe('embedded upstream: users and moderation', () => {
  test('queryUsers, mute, block, channel ban, flag', TEST_OPTS, async () => {
    const { alice, bob, aliceId, bobId, aliceChan, bobChan } = await pair('mod');
    const { users } = await alice.queryUsers({ id: { $in: [aliceId, bobId] } }, { id: -1 });
    assert.deepEqual(users.map((u) => u.id), [bobId, aliceId]);

    const mutes = waitForEvent(alice, 'notification.mutes_updated');
    await alice.muteUser(bobId);
    await mutes;
    assert.deepEqual(alice.mutedUsers.map((m) => m.target.id), [bobId]);
    await alice.unmuteUser(bobId);

    await alice.blockUser(bobId);
    const { blocks } = await alice.getBlockedUsers();
    assert.deepEqual(blocks.map((b) => b.blocked_user_id), [bobId]);
    await alice.unBlockUser(bobId);

    const banned = waitForEvent(bob, 'user.banned');
    await aliceChan.banUser(bobId, { reason: 'spam' });
    await banned;
    await assert.rejects(bobChan.sendMessage({ text: 'let me in' }), /banned/);
    await aliceChan.unbanUser(bobId);
    const { message } = await bobChan.sendMessage({ text: 'back' });
    await alice.flagMessage(message.id, { reason: 'rude' });
  });
});

describe('embedded upstream: drafts, reminders, app', () => {
  test('createDraft, getDraft, queryDrafts, reminders, getAppSettings', TEST_OPTS, async () => {
    const { alice, aliceChan } = await pair('draft');
    const draftEvent = waitForEvent(alice, 'draft.updated');
    await aliceChan.createDraft({ text: 'half a thought' });
    await draftEvent;
    const { draft } = await aliceChan.getDraft();
    assert.equal(draft.message.text, 'half a thought');
    const { drafts } = await alice.queryDrafts({ filter: { channel_cid: aliceChan.cid } });
    assert.equal(drafts.length, 1);
    await aliceChan.deleteDraft();

    const { message } = await aliceChan.sendMessage({ text: 'remind me' });
    const created = waitForEvent(alice, 'reminder.created');
    const { reminder } = await alice.createReminder({ messageId: message.id, remind_at: new Date(Date.now() + 3600_000).toISOString() });
    assert.equal(reminder.message_id, message.id);
    await created;
    const { reminders } = await alice.queryReminders({ filter: { channel_cid: aliceChan.cid } });
    assert.equal(reminders.length, 1);
    await alice.deleteReminder(message.id);

    const { app } = await alice.getAppSettings();
    assert.ok(app.file_upload_config, 'upload limits for the UI kit');
  });
});

describe('embedded upstream: channel types', () => {
  test('getChannelType answers the configuration; an unknown type is code 16', TEST_OPTS, async () => {
    const { client } = await connect(uid('types'));
    const messaging = await client.getChannelType('messaging');
    assert.equal(messaging.name, 'messaging');
    assert.equal(messaging.typing_events, true);
    assert.equal(messaging.read_events, true);
    assert.ok(Array.isArray(messaging.commands));
    await assert.rejects(client.getChannelType('no-such-type'), (e) => e.code === 16);
  });
});
