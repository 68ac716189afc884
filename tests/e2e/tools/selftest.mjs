// SELF-TEST ONLY: run the e2e suite against tools/mock-stack.mjs (a naive
// in-process stand-in), to check the suite's own logic without the Rust
// gateway. Usage (from tests/e2e): node tools/selftest.mjs [test files...]

import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMockStack } from './mock-stack.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const suiteDir = join(here, '..');
const apiKey = 'selftestkey';
const apiSecret = 'selftest-secret-0123456789';

const stack = await startMockStack({ apiKey, apiSecret, lingerMs: 1000 });
// Default: the same invocation the Rust harness uses (directory discovery).
const targets = process.argv.length > 2 ? process.argv.slice(2) : [suiteDir];

const child = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-force-exit', ...targets], {
  stdio: 'inherit',
  cwd: suiteDir,
  env: {
    ...process.env,
    GATEWAY_URL: stack.gatewayUrl,
    ADMIN_URL: stack.adminUrl,
    EMULATOR_URL: stack.emulatorUrl,
    STREAM_API_KEY: apiKey,
    STREAM_API_SECRET: apiSecret,
  },
});
const code = await new Promise((r) => child.on('exit', (c) => r(c ?? 1)));
await stack.close();
process.exit(code);
