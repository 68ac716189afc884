// The multi-replica harness of replicas/replicas.test.mjs (issue 18): one `stream-edge emulator`, four
// `stream-edge` replicas (the fourth is the scale-up slot) and HAProxy running the shipped
// deploy/haproxy/haproxy.cfg unmodified, all on loopback with ports chosen by the kernel.
//
// Every child is started here and killed (SIGKILL) by `stop()`, and by a process 'exit' hook
// if the test runner dies first, so no process outlives the run, pass or fail.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { env, parsePrometheus } from '../lib.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const HAPROXY_CFG = path.join(HERE, '..', '..', '..', 'deploy', 'haproxy', 'haproxy.cfg');

/** How long a child gets to print its "listening" line. */
const START_TIMEOUT_MS = 15_000;
/** Short convergence delay so scenario (c) ends in seconds (production default: 30). */
export const TEST_CONVERGE_DELAY_SECONDS = 2;
/** Replicas started; the last one is HAProxy's disabled slot `edge4` until scale-up. */
export const REPLICAS = 4;

const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Keep the last lines of a child's stderr for the failure message. */
function tail(stream, lines, max = 40) {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (d) => {
    buf += d;
    const parts = buf.split('\n');
    buf = parts.pop();
    for (const p of parts) {
      lines.push(p);
      if (lines.length > max) lines.shift();
    }
  });
}

/**
 * Spawn `cmd args`, resolve with the first stdout match of `re` (the process's "listening"
 * line) and the child. Rejects, with the child's stderr tail, if it exits or stays silent.
 */
function spawnUntil(name, cmd, args, re, opts = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.add(child);
  const errTail = [];
  tail(child.stderr, errTail);
  child.errTail = errTail;
  child.on('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => fail(`no listening line within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    const fail = (why) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${name}: ${why}\n${errTail.join('\n')}`));
    };
    child.once('exit', (code, sig) => fail(`exited (${code ?? sig}) before listening`));
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      out += d;
      const m = re.exec(out);
      if (m) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.on('exit', () => children.delete(child));
        resolve({ child, match: m });
      }
    });
  });
}

/** The replica's TOML: its own loopback ports, the shared emulator and app, clustering if built. */
function replicaConfig({ emulatorUrl, cluster }) {
  const lines = [
    'listen = "127.0.0.1:0"',
    'admin_listen = "127.0.0.1:0"',
    '',
    '[[apps]]',
    `api_key = ${JSON.stringify(env('STREAM_API_KEY'))}`,
    `secrets = [${JSON.stringify(env('STREAM_API_SECRET'))}]`,
    '',
    '[upstream]',
    `url = ${JSON.stringify(emulatorUrl)}`,
    // A user's upstream connection goes ~1 s after its last session: placement counts settle fast.
    'linger_seconds = 1',
    '',
    '[auth]',
    'leeway_seconds = 0',
    '',
    // Every test client is 127.0.0.1 behind HAProxy: the per-IP connect rate would throttle the
    // whole suite as one client.
    '[limits]',
    'connect_rate_per_ip = 0',
  ];
  if (cluster) {
    lines.push(
      '',
      '[cluster]',
      'peer_listen = "127.0.0.1:0"',
      'peers = ["127.0.0.1"]',
      `converge_delay_seconds = ${TEST_CONVERGE_DELAY_SECONDS}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Whether this binary knows `[cluster]` (the lead's src/cluster). Without it, scenarios (a) and
 * (d) still run; (b), (c) and (e) fail on their forwarding assertions.
 */
function clusterSupported(bin, dir, emulatorUrl) {
  const file = path.join(dir, 'probe.toml');
  writeFileSync(file, replicaConfig({ emulatorUrl, cluster: true }));
  const r = spawnSync(bin, ['check-config', '--config', file], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0;
}

// "stream-edge listening on http://A admin http://B" plus " peer http://C" with clustering.
const LISTENING = /stream-edge listening on (http:\/\/\S+) admin (http:\/\/\S+)(?: peer (http:\/\/\S+))?/;

async function startReplica(bin, dir, i, emulatorUrl, cluster) {
  const file = path.join(dir, `replica${i}.toml`);
  writeFileSync(file, replicaConfig({ emulatorUrl, cluster }));
  const { child, match } = await spawnUntil(`replica ${i}`, bin, ['serve', '--config', file], LISTENING, {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  return { index: i, child, url: match[1], admin: match[2], peer: match[3], name: `edge${i}` };
}

/**
 * HAProxy's client port. HAProxy cannot report an ephemeral port it bound itself, so the harness
 * binds 127.0.0.1:0 here and hands the listening socket to HAProxy as its fd 3
 * (`EDGE_FRONTEND_BIND=fd@3`): no port is guessed and none can be taken in between. libuv dup2()s
 * the descriptor into the child, which clears close-on-exec; our own copy is closed right after.
 */
async function frontendSocket() {
  const srv = net.createServer();
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  return { srv, fd: srv._handle.fd, port: srv.address().port };
}

/** One command on HAProxy's runtime API (the stats socket); resolves with the answer text. */
export function haproxyCommand(socketPath, command) {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    let out = '';
    s.setEncoding('utf8');
    s.setTimeout(5000, () => s.destroy(new Error(`runtime API timeout: ${command}`)));
    s.on('connect', () => s.end(`${command}\n`));
    s.on('data', (d) => (out += d));
    s.on('error', reject);
    s.on('close', () => resolve(out));
  });
}

/** Operational state of each backend server from `show stat`: {edge1: 'UP', edge4: 'MAINT', …}. */
export async function serverStates(socketPath) {
  const csv = await haproxyCommand(socketPath, 'show stat');
  const rows = csv.split('\n');
  const header = rows[0].replace(/^# /, '').split(',');
  const [px, sv, st] = ['pxname', 'svname', 'status'].map((h) => header.indexOf(h));
  const out = {};
  for (const r of rows.slice(1)) {
    const f = r.split(',');
    if (f[px] === 'stream_edge' && f[sv]?.startsWith('edge')) out[f[sv]] = f[st];
  }
  return out;
}

async function waitFor(fn, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let last;
    try {
      last = await fn();
      if (last === true) return;
    } catch (e) {
      if (e.fatal) throw e;
      last = e.message;
    }
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Start everything; resolves with the cluster handle. */
export async function startCluster() {
  const bin = env('STREAM_EDGE_BIN');
  const haproxyBin = env('HAPROXY_BIN');
  const dir = mkdtempSync(path.join(tmpdir(), 'se-replicas-'));
  const c = { dir, replicas: [], children };
  try {
    const emu = await spawnUntil(
      'emulator',
      bin,
      ['emulator', '--control', '--listen', '127.0.0.1:0', '--api-key', env('STREAM_API_KEY'), '--api-secret', env('STREAM_API_SECRET')],
      /emulator listening on (http:\/\/\S+)/,
    );
    c.emulator = emu.child;
    c.emulatorUrl = emu.match[1];
    c.cluster = clusterSupported(bin, dir, c.emulatorUrl);
    for (let i = 1; i <= REPLICAS; i++) c.replicas.push(await startReplica(bin, dir, i, c.emulatorUrl, c.cluster));

    const front = await frontendSocket();
    c.socket = path.join(dir, 'haproxy.sock');
    const hEnv = {
      ...process.env,
      EDGE_FRONTEND_BIND: 'fd@3',
      EDGE_STATS_SOCKET: c.socket,
      // Fast health checks: a killed replica leaves the ring within about a second.
      EDGE_CHECK_INTER: '300ms',
      // The production bound needs an fd limit of ~200k, more than a CI shell grants.
      EDGE_MAXCONN: '4000',
    };
    for (const r of c.replicas) {
      hEnv[`EDGE_SERVER_${r.index}`] = new URL(r.url).host;
      hEnv[`EDGE_CHECK_PORT_${r.index}`] = new URL(r.admin).port;
    }
    // -db: foreground, no daemon, so SIGKILL on the child ends it.
    const hap = spawn(haproxyBin, ['-db', '-f', HAPROXY_CFG], { env: hEnv, stdio: ['ignore', 'pipe', 'pipe', front.fd] });
    front.srv.close();
    children.add(hap);
    hap.on('exit', () => children.delete(hap));
    hap.errTail = [];
    tail(hap.stderr, hap.errTail);
    tail(hap.stdout, hap.errTail);
    c.haproxy = hap;
    c.url = `http://127.0.0.1:${front.port}`;
    await waitFor(async () => {
      if (hap.exitCode !== null) throw Object.assign(new Error(`haproxy exited: ${hap.errTail.join('\n')}`), { fatal: true });
      const s = await serverStates(c.socket);
      return s.edge1 === 'UP' && s.edge2 === 'UP' && s.edge3 === 'UP' && s.edge4 === 'MAINT' ? true : s;
    }, 'HAProxy sees edge1..3 UP and edge4 in maintenance');
    return c;
  } catch (e) {
    stopCluster(c);
    throw e;
  }
}

export function stopCluster(c) {
  for (const ch of [...children]) ch.kill('SIGKILL');
  if (c?.dir) rmSync(c.dir, { recursive: true, force: true });
}

/** Scale-up: take slot edge4 out of maintenance on the runtime API; wait until it is UP. */
export async function enableFourth(c) {
  await haproxyCommand(c.socket, 'enable server stream_edge/edge4');
  await waitFor(async () => {
    const s = await serverStates(c.socket);
    return s.edge4 === 'UP' ? true : s;
  }, 'edge4 UP after enable');
}

export async function disableFourth(c) {
  await haproxyCommand(c.socket, 'disable server stream_edge/edge4');
}

/** Sum of `name`'s series matching `labels` on one replica's /metrics (0 when absent). */
export async function replicaMetric(replica, name, labels = {}) {
  const res = await fetch(`${replica.admin}/metrics`, { signal: AbortSignal.timeout(5000) });
  const series = parsePrometheus(await res.text());
  return series
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === String(v)))
    .reduce((a, s) => a + s.value, 0);
}

/** Whether `name` is exported at all by a replica (cluster metrics exist only with clustering). */
export async function replicaHasMetric(replica, name) {
  const res = await fetch(`${replica.admin}/metrics`, { signal: AbortSignal.timeout(5000) });
  return parsePrometheus(await res.text()).some((s) => s.name === name);
}

/** The live replicas (not SIGKILLed). */
export const alive = (c) => c.replicas.filter((r) => r.child.exitCode === null && r.child.signalCode === null);

/** `stream_edge_upstream_connections_open` of each live replica, by replica name. */
export async function upstreamByReplica(c) {
  const out = {};
  for (const r of alive(c)) out[r.name] = await replicaMetric(r, 'stream_edge_upstream_connections_open');
  return out;
}
