// Compile-time check (tsc runs before the tests): the platform's WebSocket, fetch and window fit the
// options as they are, without casts.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { PamClient } from '../../src/index.js';

declare const DomWebSocket: typeof WebSocket;
declare const browserWindow: Window & typeof globalThis;

it('takes the DOM WebSocket, fetch and window types without casts', () => {
  const make = () => new PamClient({ url: 'https://pam.test', getToken: () => 't', WebSocket: DomWebSocket, fetch, environment: null });
  const inBrowser = () => new PamClient({ url: 'https://pam.test', getToken: async () => 't', environment: browserWindow });
  assert.equal(typeof make, 'function');
  assert.equal(typeof inBrowser, 'function');
});
