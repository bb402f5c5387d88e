// Validates the generated protocol documents with third-party tools: docs/asyncapi.json with the
// official AsyncAPI parser (any error-level diagnostic fails), every message example against its
// group's JSON Schema in docs/schema/ (ajv, draft-07), and a few frames the schemas must refuse.
import fs from 'node:fs';
import { Parser } from '@asyncapi/parser';
import Ajv from 'ajv';

const docs = process.argv[2] ?? 'docs';
const read = (path) => JSON.parse(fs.readFileSync(`${docs}/${path}`, 'utf8'));
let failures = 0;
const fail = (what) => { failures += 1; console.log(`FAIL ${what}`); };

const { document, diagnostics } = await new Parser().parse(fs.readFileSync(`${docs}/asyncapi.json`, 'utf8'));
for (const d of diagnostics) {
  const line = `${d.code}: ${d.message} at ${JSON.stringify(d.path)}`;
  if (d.severity === 0) fail(`asyncapi ${line}`); else console.log(`note asyncapi ${line}`);
}
if (!document) fail('asyncapi.json did not parse');

const asyncapi = read('asyncapi.json');
// uint64/int64 are schemars' format annotations; not validation keywords.
const ajv = new Ajv({ strict: false, logger: false });
const groups = { 'legacy-client': 'legacy.client.', 'legacy-server': 'legacy.server.', 'v2-client': 'v2.client.', 'v2-server': 'v2.server.' };
const validators = {};
let examples = 0;
for (const [group, prefix] of Object.entries(groups)) {
  validators[group] = ajv.compile(read(`schema/${group}.json`));
  for (const [key, message] of Object.entries(asyncapi.components.messages)) {
    if (!key.startsWith(prefix)) continue;
    for (const example of message.examples ?? []) {
      examples += 1;
      if (!validators[group](example.payload)) fail(`${key} example: ${ajv.errorsText(validators[group].errors)}`);
    }
  }
}
const refused = [
  ['v2-client', { type: 'chat', message: 'no id' }],
  ['v2-client', { type: 'chat', id: '', message: 'empty id' }],
  ['v2-client', { type: 'resume', session_id: 's' }],
  ['legacy-client', { type: 'chat', session_id: 'has space' }],
  ['legacy-client', { type: 'dance' }],
  ['legacy-server', { type: 'chat_response', message: 'only a message' }],
  ['v2-server', { type: 'ack', id: 'm-1' }],
];
for (const [group, frame] of refused) {
  if (validators[group](frame)) fail(`${group} accepted ${JSON.stringify(frame)}`);
}
const closeCodes = ajv.compile(read('schema/close-codes.json'));
for (const code of [1000, 1013, 4401, 4508]) if (!closeCodes(code)) fail(`close code ${code} refused`);
for (const code of [1006, 4000, 4999]) if (closeCodes(code)) fail(`close code ${code} accepted`);

console.log(`${examples} examples valid, ${refused.length} bad frames refused, ${failures} failures`);
process.exit(failures === 0 ? 0 : 1);
