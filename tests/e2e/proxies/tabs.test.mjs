// A measurement, not a CI test (issue 19): how many tabs of one browser keep working in long-poll
// mode behind a WebSocket-blocking Squid, where the browser opens at most 6 HTTP/1.1 connections
// per host. Run through `cargo test --test it -- --ignored proxies::many_tabs` (TABS, default 8);
// it prints one line per tab count and fails only if the page itself breaks.
import { after, afterEach, describe, test } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { cfg, cleanup, connect, longLivedToken, requireEnv, uid } from '../lib.mjs';
import { startStaticServer } from '../tools/static-site.mjs';

const SUITE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
const { SQUID_URL, TABS } = process.env;
const MAX_TABS = Number(TABS ?? 8);

let site;
let browser;
afterEach(cleanup);
after(async () => {
  await browser?.close().catch(() => {});
  await cleanup();
  await site?.close();
});

describe('many tabs behind a WebSocket-blocking Squid', { skip: !SQUID_URL && 'SQUID_URL is not set' }, () => {
  test(`1..${MAX_TABS} tabs of one user in one browser`, { timeout: 60_000 + MAX_TABS * 40_000 }, async () => {
    requireEnv();
    site = await startStaticServer(SUITE_DIR);
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      timeout: 45_000,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', `--proxy-server=${SQUID_URL}`, '--proxy-bypass-list=<-loopback>'],
    });
    const context = await browser.newContext();
    const user = uid('tabs');
    const bobId = uid('tabs-bob');
    const channelId = uid('tabs');
    const { client: bob } = await connect(bobId);
    const bobChan = bob.channel('messaging', channelId, { members: [user, bobId] });
    await bobChan.watch();
    const params = new URLSearchParams({ baseURL: cfg.gatewayUrl, apiKey: cfg.apiKey, userId: user, token: longLivedToken(user), channelId });
    const pages = [];
    for (let n = 1; n <= MAX_TABS; n++) {
      const page = await context.newPage();
      pages.push(page);
      const opened = Date.now();
      await page.goto(`${site.url}/browser/index.html?${params}`, { timeout: 30_000 }).catch(() => {});
      const ready = await page
        .waitForFunction(() => window.__state === 'ready' || window.__state === 'error', undefined, { timeout: 35_000, polling: 100 })
        .then(() => page.evaluate(() => window.__state))
        .catch(() => 'timeout');
      const readyMs = Date.now() - opened;
      // One message; every tab should get it over its long-poll.
      const sent = await bobChan.sendMessage({ text: `tabs ${n}` });
      const t0 = Date.now();
      const got = await Promise.all(
        pages.map((p) =>
          p
            .waitForFunction(({ id }) => window.__events?.some((e) => e.type === 'message.new' && e.message?.id === id), { id: sent.message.id }, { timeout: 30_000, polling: 100 })
            .then(() => Date.now() - t0)
            .catch(() => null),
        ),
      );
      const delivered = got.filter((ms) => ms !== null);
      console.log(
        `TABS ${n}: newest tab ${ready} in ${readyMs} ms; message delivered to ${delivered.length}/${n} tabs` +
          (delivered.length ? ` (slowest ${Math.max(...delivered)} ms)` : ''),
      );
    }
    for (const p of pages) await p.evaluate(() => window.__disconnect?.()).catch(() => {});
  });
});
