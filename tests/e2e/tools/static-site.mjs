// Static server for the browser tests' page (browser/index.html) on its own origin
// (127.0.0.1:<another port>), so every SDK call from the page is cross-origin. Only the page and
// the packages the SDK's browser build imports are served, from the suite directory `root`.
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { extname, join, normalize, sep } from 'node:path';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};
const SERVED = ['browser/', 'node_modules/stream-chat/dist/', 'node_modules/axios/dist/', 'node_modules/isomorphic-ws/', 'node_modules/linkifyjs/dist/'];

export async function startStaticServer(root) {
  const server = http.createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://static.invalid').pathname).replace(/^\/+/, '');
    const rel = normalize(path);
    const file = join(root, rel);
    const allowed =
      !rel.startsWith('..') && file.startsWith(root + sep) && SERVED.some((p) => rel.split(sep).join('/').startsWith(p));
    if (req.method !== 'GET' || !allowed) {
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
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
