// A tiny app for shipshape's quickstart and tests: no dependencies, one file.
// GET /              -> "hello from <version>"
// GET /api/health    -> 200 {"status":"ok","version":...} (or 503 when HEALTH_FAIL is set)
// GET /version       -> the version string
// The version comes from the build output (dist/version.json), written by `npm run build`.
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');

let build = { version: 'unbuilt' };
try {
  build = JSON.parse(fs.readFileSync(path.join(__dirname, 'dist', 'version.json'), 'utf8'));
} catch (e) {
  console.error('no build output (dist/version.json): run npm run build');
}

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';
const failing = Boolean(process.env.HEALTH_FAIL);

const server = http.createServer((req, res) => {
  if (req.url === '/api/health') {
    const ok = !failing;
    res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: ok ? 'ok' : 'failing', version: build.version, greeting: process.env.GREETING || null }));
  } else if (req.url === '/version') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(build.version + '\n');
  } else {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`${process.env.GREETING || 'hello'} from ${build.version}\n`);
  }
});

server.listen(port, host, () => {
  console.log(`listening on http://${host}:${port} (version ${build.version})`);
  if (process.send) process.send('ready');
});

function shutdown() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
