// A tiny app for shipshape's quickstart and tests: no dependencies, one file.
// GET /              -> "hello from <version>"
// GET /api/health    -> 200 {"status":"ok","version":...}; 503 when HEALTH_FAIL is set, or
//                       when the file named by HEALTH_FAIL_FILE mentions this version;
//                       never answers when HEALTH_HANG is set
// GET /version       -> the version string
// GET /metrics       -> Prometheus text: http_requests_total{code}, process memory
// BOOT_DELAY_MS=N    -> start listening only N ms after start (a slow boot: connections
//                       are refused until then)
// CRASH_AT_START=1 -> exit(1) at once, before listening (a config that cannot start: for
//                     tests of a replace whose new processes crash)
// The version comes from the build output (dist/version.json), written by `npm run build`.
// LEAK_MB_PER_SEC=N  leaks memory on purpose (for demos and tests of `resources` checks):
//                    every 100 ms it allocates N/10 MiB of Buffers, writes to them (so they
//                    count in resident memory) and keeps them, until LEAK_MAX_MB (default
//                    1024, i.e. 1 GiB) is held. Each instance leaks on its own.
'use strict';
if (process.env.CRASH_AT_START) {
  console.error('CRASH_AT_START is set: exiting before listening');
  process.exit(1);
}
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
const failAlways = Boolean(process.env.HEALTH_FAIL);
const failFile = process.env.HEALTH_FAIL_FILE;
// A flaky but healthy endpoint: every Nth answer of /api/health fails (HEALTH_FLAKY_EVERY=4
// fails a quarter of them), counted per process.
const flakyEvery = Number(process.env.HEALTH_FLAKY_EVERY || 0);
let healthAnswers = 0;
// A slow endpoint: /api/health answers after this many milliseconds (for maxLatency).
const healthDelay = Number(process.env.HEALTH_DELAY_MS || 0);
// A huge reply: /api/health streams this many MiB after its JSON (for the probe's read limit).
const healthBodyMb = Number(process.env.HEALTH_BODY_MB || 0);

// Failing on purpose, for demos and tests: always, or while a file names this version.
function failing() {
  if (failAlways) return true;
  if (!failFile) return false;
  try {
    return fs.readFileSync(failFile, 'utf8').split(/\s+/).includes(build.version);
  } catch (e) {
    return false;
  }
}

// Leaking on purpose: N MiB per second of retained, written Buffers, up to a cap.
const leakPerSec = Number(process.env.LEAK_MB_PER_SEC || 0);
const leakMax = Number(process.env.LEAK_MAX_MB || 1024) * 1024 * 1024;
const leaked = [];
let leakedBytes = 0;
if (leakPerSec > 0) {
  const chunk = Math.max(1, Math.round((leakPerSec * 1024 * 1024) / 10));
  const timer = setInterval(() => {
    if (leakedBytes + chunk > leakMax) return clearInterval(timer);
    leaked.push(Buffer.alloc(chunk, 1));
    leakedBytes += chunk;
  }, 100);
  timer.unref();
}

const counts = {};
function metrics() {
  const lines = [
    '# HELP http_requests_total Requests served, by status code.',
    '# TYPE http_requests_total counter',
  ];
  for (const [code, n] of Object.entries(counts)) lines.push(`http_requests_total{code="${code}"} ${n}`);
  lines.push('# HELP process_resident_memory_bytes Resident memory.');
  lines.push('# TYPE process_resident_memory_bytes gauge');
  lines.push(`process_resident_memory_bytes ${process.memoryUsage().rss}`);
  lines.push('# HELP app_info The running version.');
  lines.push('# TYPE app_info gauge');
  lines.push(`app_info{version="${build.version}"} 1`);
  return lines.join('\n') + '\n';
}

const server = http.createServer((req, res) => {
  res.on('finish', () => {
    if (req.url !== '/metrics') counts[res.statusCode] = (counts[res.statusCode] || 0) + 1;
  });
  if (req.url === '/metrics') {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.end(metrics());
  } else if (req.url === '/api/health' && process.env.HEALTH_HANG) {
    // Never answer (for the "health endpoint that hangs" fault).
  } else if (req.url === '/api/health') {
    healthAnswers += 1;
    const ok = !failing() && !(flakyEvery > 0 && healthAnswers % flakyEvery === 0);
    const answer = () => {
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
      const body = JSON.stringify({ status: ok ? 'ok' : 'failing', version: build.version, greeting: process.env.GREETING || null });
      if (healthBodyMb <= 0) return res.end(body);
      res.write(body);
      // Stream the padding a MiB at a time, honouring back-pressure (the reader may stop early).
      const mib = Buffer.alloc(1024 * 1024, 0x20);
      let left = healthBodyMb;
      const more = () => {
        while (left > 0) {
          left -= 1;
          if (!res.write(mib)) return res.once('drain', more);
        }
        res.end();
      };
      more();
    };
    if (healthDelay > 0) setTimeout(answer, healthDelay);
    else answer();
  } else if (req.url === '/version') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(build.version + '\n');
  } else {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`${process.env.GREETING || 'hello'} from ${build.version}\n`);
  }
});

const bootDelay = Number(process.env.BOOT_DELAY_MS || 0);
setTimeout(() => server.listen(port, host, () => {
  console.log(`listening on http://${host}:${port} (version ${build.version})`);
  if (process.send) process.send('ready');
}), bootDelay);

// Stop taking connections, finish the ones in flight, then exit. Under pm2's cluster mode
// the pm2 daemon (the cluster primary) accepts connections and hands each to a worker over
// IPC: a worker that exits right after server.close() can die with a handed-over connection
// still unread in that channel, and the primary keeps it open unanswered (the client hangs).
// cluster.worker.disconnect() closes the servers and waits for the primary's ack before it
// disconnects, so a connection handed over meanwhile is refused back to the primary, which
// gives it to another worker.
function shutdown() {
  setTimeout(() => process.exit(0), 2000).unref();
  const cluster = require('cluster');
  if (cluster.isWorker) {
    // Linger a moment after the primary's ack, as a safety margin for a connection in flight.
    cluster.worker.once('disconnect', () => setTimeout(() => process.exit(0), 250));
    cluster.worker.disconnect();
  } else {
    server.close(() => process.exit(0));
  }
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
