// The PromptHub benchmark app's entry point under pm2 (cluster mode): Next.js through its
// programmatic API, listening on 127.0.0.1:$PORT only once Next is prepared (so pm2's
// reload, which waits for "listening", never hands a connection to a worker still
// booting), and shutting down gracefully on SIGINT.
'use strict';
const http = require('http');
const next = require('next');

process.env.NEXT_TELEMETRY_DISABLED = '1';
const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';
const app = next({ dev: false, dir: __dirname, hostname: host, port });
const handle = app.getRequestHandler();

let server;
app.prepare().then(() => {
  server = http.createServer((req, res) => handle(req, res));
  server.keepAliveTimeout = 5000;
  server.listen(port, host, () => {
    console.log(`listening on http://${host}:${port}`);
    if (process.send) process.send('ready');
  });
}).catch((e) => {
  console.error(e);
  process.exit(1);
});

// Stop taking connections, finish the ones in flight, then exit. Under pm2's cluster mode
// the primary hands each connection to a worker over IPC: cluster.worker.disconnect()
// closes the servers and waits for the primary's ack, so a connection handed over
// meanwhile goes to another worker instead of hanging (as examples/app/server.js does).
function shutdown() {
  setTimeout(() => process.exit(0), 4000).unref();
  const cluster = require('cluster');
  if (cluster.isWorker) {
    cluster.worker.once('disconnect', () => setTimeout(() => process.exit(0), 250));
    cluster.worker.disconnect();
  } else if (server) {
    server.close(() => process.exit(0));
  } else {
    process.exit(0);
  }
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
