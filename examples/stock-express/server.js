// An ordinary Express app, as a developer would write it without knowing about shipshape:
// no shutdown handler, no readiness message, no switches for tests. Its health check pings a
// "database" that is slow now and then (a fifth of the pings, at random), and says so.
'use strict';
const express = require('express');
const { version } = require('./package.json');

const app = express();
const port = process.env.PORT || 3000;

// Stands in for a real dependency check (a database ping with a short timeout).
function databaseAnswersInTime() {
  return Math.random() >= 0.2;
}

app.get('/', (req, res) => {
  res.send(`hello from ${version}\n`);
});

app.get('/health', (req, res) => {
  if (databaseAnswersInTime()) {
    res.json({ status: 'ok', version });
  } else {
    res.status(503).json({ status: 'degraded', reason: 'database ping timed out' });
  }
});

app.listen(port, () => {
  console.log(`stock-express ${version} listening on port ${port}`);
});
