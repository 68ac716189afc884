// Bundles src/main.jsx (React, stream-chat-react, stream-chat) with the pinned esbuild into the
// workspace's target/ui-dist/ (generated third-party code: kept out of the source tree, git-ignored
// with target/): index.html, main.js, main.css and the fonts/images the CSS refers to.
//   node build.mjs            build once
//   node build.mjs --serve    build, then serve it on 127.0.0.1 (PORT if set, else a free port; the
//                             URL is printed)
// ui.test.mjs imports `build` and `serve` (port 0) from here.
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const HERE = dirname(fileURLToPath(import.meta.url));
export const DIST = join(HERE, '..', '..', '..', 'target', 'ui-dist');

export async function build() {
  await mkdir(DIST, { recursive: true });
  await esbuild.build({
    entryPoints: [join(HERE, 'src/main.jsx')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    outdir: DIST,
    jsx: 'automatic',
    minify: true,
    sourcemap: false,
    logLevel: 'warning',
    define: { 'process.env.NODE_ENV': '"production"' },
    loader: { '.eot': 'file', '.woff': 'file', '.woff2': 'file', '.ttf': 'file', '.svg': 'file', '.png': 'file', '.mp3': 'file' },
  });
  await copyFile(join(HERE, 'index.html'), join(DIST, 'index.html'));
}

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.eot': 'application/vnd.ms-fontobject',
  '.mp3': 'audio/mpeg',
};

/** Serves DIST (GET only, nothing outside it). Resolves to { url, close }. */
export async function serve(port = 0) {
  const server = http.createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://static.invalid').pathname).replace(/^\/+/, '');
    const file = join(DIST, normalize(path || 'index.html'));
    if (req.method !== 'GET' || !file.startsWith(DIST + sep)) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': MIME[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await build();
  if (process.argv.includes('--serve')) {
    const site = await serve(Number(process.env.PORT ?? 0));
    console.log(`chat page: ${site.url}/?base=<gateway URL>&key=<api key>&user=<user id>&token=<user JWT>`);
  } else {
    console.log(`built ${DIST}`);
  }
}
