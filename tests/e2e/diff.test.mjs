// gateway metric names used: none (the differential harness compares with the embedded upstream)
//
// The differential multi-tab harness (issue 15): multiplexing must be invisible. Each seed builds
// a scripted scenario (diff/scenario.mjs: 2–3 users with 1–4 tabs each, 2–4 channels, operations
// interleaved across tabs), runs it twice (diff/run.mjs): once with every tab directly on the
// embedded upstream, each on its own connection (the oracle), once with every tab through the
// gateway; then compares, per tab, the events received and the SDK state (diff/compare.mjs).
//
// CI runs CI_SEEDS. Long mode: DIFF_SEEDS=<n> runs seeds 1..n, DIFF_SEED=<s> one seed;
// DIFF_LENGTH=<ops> sets the operations per scenario; DIFF_ALL_OPS=1 also generates the operations
// in GATEWAY_PENDING (whose gateway fixes have not landed yet), DIFF_ENABLE=<op,…> only some of
// them; DIFF_AGAINST=emulator compares two oracle runs (the harness's own determinism).

import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { cfg, cleanup, longLivedToken, requireEnv, uid } from './lib.mjs';
import { OPS_NEEDING_ROUTES, OP_WEIGHTS, describeOp, generate } from './diff/scenario.mjs';
import { runScenario, runTag } from './diff/run.mjs';
import { compareRuns, formatDiffs } from './diff/compare.mjs';

/** Seeds every CI run checks (bounded: the whole file well under a minute). */
const CI_SEEDS = [1, 2, 3, 4, 5, 6];
/** Operations per CI scenario. */
const CI_LENGTH = 30;

/**
 * Operations the gateway does not yet get right (issue 15), left out of generated scenarios
 * until their fix lands; DIFF_ALL_OPS=1 puts them back. Each names what it shows today.
 */
// Every operation is on: the last ones (drop, removeMember, reply) landed with issue 15.
export const GATEWAY_PENDING = new Map([]);

before(() => requireEnv());
afterEach(cleanup);
after(cleanup);

const envInt = (name) => {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${v}`);
  return n;
};

const single = envInt('DIFF_SEED');
const many = envInt('DIFF_SEEDS');
const seeds = single !== undefined ? [single] : many !== undefined ? Array.from({ length: many }, (_, i) => i + 1) : CI_SEEDS;
const length = envInt('DIFF_LENGTH') ?? CI_LENGTH;
const allOps = process.env.DIFF_ALL_OPS === '1';
// DIFF_ENABLE=drop,reply turns on only those pending operations.
const enableOps = new Set((process.env.DIFF_ENABLE ?? '').split(',').filter(Boolean));
// DIFF_AGAINST=emulator runs the second run on the emulator too: a check that the harness itself is
// deterministic (any difference then is the harness's, not the gateway's).
const againstEmulator = process.env.DIFF_AGAINST === 'emulator';

/**
 * Which route-dependent operations the embedded upstream serves: a route it lacks answers 404
 * "route … does not exist" (any other answer means the route is there).
 */
async function probeRoutes() {
  const user = uid('probe');
  const token = longLivedToken(user);
  const q = `api_key=${encodeURIComponent(cfg.apiKey)}`;
  const probes = {
    hide: ['POST', `/channels/messaging/${user}/hide`],
    show: ['POST', `/channels/messaging/${user}/show`],
    members: ['POST', `/channels/messaging/${user}`],
    threads: ['POST', '/threads'],
  };
  const have = new Set();
  for (const [name, [method, path]] of Object.entries(probes)) {
    const res = await fetch(`${cfg.emulatorUrl}${path}?${q}`, {
      method,
      headers: { authorization: token, 'stream-auth-type': 'jwt', 'content-type': 'application/json' },
      body: '{}',
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    if (!(res.status === 404 && /route \S+ \S+ does not exist/.test(text))) have.add(name);
  }
  return have;
}

let enabled;
async function enabledOps() {
  if (enabled) return enabled;
  const routes = await probeRoutes();
  enabled = new Set(
    Object.keys(OP_WEIGHTS).filter(
      (op) =>
        (!OPS_NEEDING_ROUTES[op] || routes.has(OPS_NEEDING_ROUTES[op])) && (allOps || enableOps.has(op) || !GATEWAY_PENDING.has(op)),
    ),
  );
  return enabled;
}

for (const seed of seeds) {
  test(`differential multi-tab scenario, seed ${seed}`, { timeout: 120_000 }, async (t) => {
    const ops = await enabledOps();
    const sc = generate(seed, { ops, length });
    const oracle = await runScenario(sc, { baseURL: cfg.emulatorUrl, tag: runTag() });
    await cleanup();
    const gateway = againstEmulator
      ? await runScenario(sc, { baseURL: cfg.emulatorUrl, tag: runTag() })
      : await runScenario(sc, { baseURL: cfg.gatewayUrl, tag: runTag(), expectWatch: oracle.watch });
    const diffs = compareRuns(sc, oracle, gateway);
    const tabs = sc.users.map((u) => u.tabs).join('+');
    // Failed calls are compared too (both runs must fail alike); listed so a broken op shows.
    const failed = Object.values(oracle.tabs).flatMap((tab) => tab.errors.map((e) => `#${e.step} ${e.op}: ${e.error}`));
    t.diagnostic(
      `seed ${seed}: ${sc.ops.length} ops, tabs ${tabs}, ${sc.channels.length} channels, ops [${[...ops].sort().join(' ')}]` +
        (failed.length ? `; calls failing on the oracle too: ${failed.join('; ')}` : ''),
    );
    if (diffs.length) {
      const report = formatDiffs(seed, diffs, { describeStep: (s) => describeOp(sc.ops[s], s) });
      assert.fail(`${report}\nscript:\n${sc.ops.map((op, i) => `  ${describeOp(op, i)}`).join('\n')}`);
    }
  });
}
