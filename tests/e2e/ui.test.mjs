// A real chat UI in a real browser (issue 17, "How it is shown"): the stream-chat-react page in
// ui/ (bundled here, in `before`, with its pinned esbuild) runs in two headless Chromium contexts
// as two users against the gateway and its embedded upstream. The test clicks and types as a
// person would and checks each side by the page's DOM text: the channel list, a message crossing
// over, typing and read indicators, a reaction, a thread reply, an edit, a delete and an image
// upload. Screenshots of both end states go to target/ui-artifacts/ (git-ignored; not compared).

import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { TEST_OPTS, cfg, cleanup, connect, longLivedToken, requireEnv, uid } from './lib.mjs';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SUITE_DIR = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = join(SUITE_DIR, '..', '..', 'target', 'ui-artifacts');
// Every wait is bounded; generous, because two Chromium renderers, the gateway and the bundle
// share 2 cores under load.
const STEP_MS = 20_000;
// A 1×1 PNG (one red pixel): what the emulator stores and serves back for the image upload.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

let site;
let browser;
const pages = {};

before(async () => {
  requireEnv();
  assert.ok(
    existsSync(join(SUITE_DIR, 'ui', 'node_modules', 'stream-chat-react')),
    'tests/e2e/ui/node_modules is missing: run `npm ci --prefix tests/e2e/ui` (tests/run does it)',
  );
  // Imported here, not at the top: its `esbuild` lives in ui/node_modules.
  const { build, serve } = await import('./ui/build.mjs');
  await build();
  site = await serve(0);
});
afterEach(cleanup);
after(async () => {
  // Whatever happened, leave the end state (or the failure state) as screenshots.
  await mkdir(ARTIFACTS, { recursive: true }).catch(() => {});
  for (const [who, page] of Object.entries(pages)) {
    await page.screenshot({ path: join(ARTIFACTS, `${who}.png`), fullPage: true, timeout: 10_000 }).catch(() => {});
    await page.evaluate(() => window.__chat?.disconnectUser()).catch(() => {});
  }
  await browser?.close().catch(() => {});
  await cleanup();
  await site?.close();
});

/** Opens the page as `userId` in a fresh browser context (its own storage: a second person). */
async function openAs(userId, name) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  const log = [];
  page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => log.push(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => r.status() >= 400 && log.push(`http ${r.status()}: ${r.request().method()} ${r.url()}`));
  page.log = log;
  const q = new URLSearchParams({ base: cfg.gatewayUrl, key: cfg.apiKey, user: userId, name, token: longLivedToken(userId) });
  await page.goto(`${site.url}/index.html?${q}`, { timeout: STEP_MS });
  return page;
}

/** Runs one user-visible step; a failure names the step and shows both pages' recent console. */
async function step(what, fn) {
  try {
    return await fn();
  } catch (e) {
    const logs = Object.entries(pages).map(([who, p]) => `${who}:\n  ${p.log.slice(-15).join('\n  ')}`);
    throw new Error(`step "${what}" failed: ${e.message}\n${logs.join('\n')}`);
  }
}

const main = (page) => page.locator('.str-chat__main-panel');
const thread = (page) => page.locator('.str-chat__thread');
/** The (newest) message in the main list whose text contains `text`. */
const messageWith = (page, text) => main(page).locator('.str-chat__message', { hasText: text }).last();
const visible = (locator) => locator.first().waitFor({ state: 'visible', timeout: STEP_MS });

async function send(page, text, scope = main(page)) {
  const box = scope.locator('textarea.str-chat__textarea__textarea');
  await box.click({ timeout: STEP_MS });
  await box.fill(text, { timeout: STEP_MS });
  await box.press('Enter', { timeout: STEP_MS });
}

/** Opens a message's "…" menu and picks an entry, as a person does (hover, click, click). */
async function messageAction(page, text, entry) {
  const msg = messageWith(page, text);
  await msg.hover({ timeout: STEP_MS });
  await msg.getByTestId('message-actions-toggle-button').click({ timeout: STEP_MS });
  await page.locator('.str-chat__message-actions-box--open').getByRole('option', { name: entry, exact: true }).click({ timeout: STEP_MS });
}

describe('ui: stream-chat-react in headless Chromium', () => {
  test('two users chat through the stock React components', { ...TEST_OPTS, timeout: 120_000 }, async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get update && apt-get install -y chromium (tests/run does it)`);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 45_000 });

    const aliceId = uid('ui-alice');
    const bobId = uid('ui-bob');
    const tag = aliceId.slice(-6);
    const lobby = `Lobby ${tag}`;
    const design = `Design ${tag}`;

    // A backend would create the channels; here Alice's Node client does, before the pages load.
    const { client: setup } = await connect(aliceId);
    await setup.channel('messaging', uid('ui-design'), { name: design, members: [aliceId, bobId] }).create();
    await setup.channel('messaging', uid('ui-lobby'), { name: lobby, members: [aliceId, bobId] }).create();
    await setup.disconnectUser();

    pages.alice = await openAs(aliceId, 'Alice');
    pages.bob = await openAs(bobId, 'Bob');
    const { alice, bob } = pages;

    await step('the channel list shows both channels', async () => {
      for (const page of [alice, bob]) {
        await visible(page.locator('.str-chat__channel-list').getByText(lobby));
        await visible(page.locator('.str-chat__channel-list').getByText(design));
      }
    });
    await step('both open the Lobby', async () => {
      for (const page of [alice, bob]) {
        await page.locator('.str-chat__channel-list').getByText(lobby).click({ timeout: STEP_MS });
        await visible(page.locator('.str-chat__channel-header').getByText(lobby));
      }
    });

    const hello = `hello from Alice ${tag}`;
    await step("Alice's message appears on Bob's side", async () => {
      await send(alice, hello);
      await visible(messageWith(bob, hello).locator('.str-chat__message-text'));
    });
    await step('Alice sees that Bob read it', async () => {
      await visible(messageWith(alice, hello).getByTestId('message-status-read-by'));
    });

    // The list shows typing under its messages (an empty channel shows only its empty state).
    // The SDK sends `typing.stop` 1 s after the last keystroke, so Bob types slowly while Alice's
    // page is watched, as a person would.
    const answer = `hi Alice, Bob here ${tag}`;
    await step('Alice sees Bob typing, then his message', async () => {
      const indicator = main(alice).getByTestId('typing-users');
      const seen = indicator.filter({ hasText: 'Bob is typing' }).waitFor({ state: 'visible', timeout: STEP_MS });
      const box = main(bob).locator('textarea.str-chat__textarea__textarea');
      await box.click({ timeout: STEP_MS });
      await Promise.all([seen, box.pressSequentially(answer, { delay: 150, timeout: STEP_MS })]);
      await box.press('Enter', { timeout: STEP_MS });
      await visible(messageWith(alice, answer).locator('.str-chat__message-text'));
      await indicator.waitFor({ state: 'detached', timeout: STEP_MS });
    });

    await step('Bob reacts with a like; both see it', async () => {
      const msg = messageWith(bob, hello);
      await msg.hover({ timeout: STEP_MS });
      await msg.getByTestId('message-reaction-action').click({ timeout: STEP_MS });
      await bob.locator('[data-testid="select-reaction-button"][data-text="like"]').first().click({ timeout: STEP_MS });
      await bob.keyboard.press('Escape');
      for (const page of [alice, bob]) {
        await visible(messageWith(page, hello).getByTestId('reactions-list-button-like'));
      }
    });

    const reply = `a reply from Bob ${tag}`;
    await step('Bob replies in a thread; both see the reply', async () => {
      const msg = messageWith(bob, hello);
      await msg.hover({ timeout: STEP_MS });
      await msg.getByTestId('thread-action').click({ timeout: STEP_MS });
      await visible(thread(bob));
      await send(bob, reply, thread(bob));
      await visible(thread(bob).getByText(reply));
      const count = messageWith(alice, hello).getByTestId('replies-count-button');
      await visible(count);
      assert.match(await count.innerText(), /1 reply/);
      await count.click({ timeout: STEP_MS });
      await visible(thread(alice).getByText(reply));
    });

    const edited = `hello again, edited ${tag}`;
    await step('Alice edits her message; both see the new text', async () => {
      await messageAction(alice, hello, 'Edit Message');
      const modal = alice.locator('.str-chat__edit-message-modal');
      await modal.locator('textarea').fill(edited, { timeout: STEP_MS });
      await modal.getByTestId('send-button-edit-form').click({ timeout: STEP_MS });
      for (const page of [alice, bob]) {
        await visible(messageWith(page, edited).getByText('Edited'));
      }
    });

    const doomed = `this one goes away ${tag}`;
    await step('Alice deletes a message; both see it deleted', async () => {
      await send(alice, doomed);
      await visible(messageWith(bob, doomed));
      await messageAction(alice, doomed, 'Delete');
      for (const page of [alice, bob]) {
        await main(page).getByText(doomed).waitFor({ state: 'detached', timeout: STEP_MS });
        await visible(main(page).getByText('This message was deleted...'));
      }
    });

    await step('Alice uploads an image; it renders on both sides', async () => {
      await main(alice).getByTestId('file-input').setInputFiles({ name: `pixel-${tag}.png`, mimeType: 'image/png', buffer: PNG }, { timeout: STEP_MS });
      // The preview shows once the upload is done; then the message can be sent.
      await visible(main(alice).locator('.str-chat__attachment-preview-image img'));
      await main(alice).getByTestId('send-button').click({ timeout: STEP_MS });
      for (const page of [alice, bob]) {
        await page.waitForFunction(
          () =>
            [...document.querySelectorAll('.str-chat__main-panel .str-chat__message-attachment--image img')].some(
              (img) => img.complete && img.naturalWidth > 0,
            ),
          null,
          { timeout: STEP_MS, polling: 100 },
        );
      }
    });

    await step("the end state's text is on both pages", async () => {
      for (const page of [alice, bob]) {
        const text = await page.locator('body').innerText();
        for (const want of [lobby, design, edited, 'This message was deleted...', reply]) {
          assert.ok(text.includes(want), `page lacks ${JSON.stringify(want)}`);
        }
        assert.ok(!text.includes(doomed), 'the deleted text is gone');
      }
    });
  });
});
