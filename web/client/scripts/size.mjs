#!/usr/bin/env node
// Prints the minified and gzipped size of the single-file bundle (dist/pam-client.min.js, made by
// `npm run bundle`), the figure the size report quotes.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const file = new URL('../dist/pam-client.min.js', import.meta.url);
const code = readFileSync(file);
const gz = gzipSync(code, { level: 9 });
const kib = (n) => (n / 1024).toFixed(1);
console.log(`pam-client bundle: ${code.length} B minified (${kib(code.length)} KiB), ${gz.length} B gzipped (${kib(gz.length)} KiB)`);
