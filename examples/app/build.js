// The example app's build step: writes dist/version.json from package.json's version.
'use strict';
const fs = require('fs');
const path = require('path');
const pkg = require('./package.json');
fs.mkdirSync(path.join(__dirname, 'dist'), { recursive: true });
fs.writeFileSync(
  path.join(__dirname, 'dist', 'version.json'),
  JSON.stringify({ version: pkg.version, builtAt: new Date().toISOString() }) + '\n',
);
console.log(`built version ${pkg.version}`);
