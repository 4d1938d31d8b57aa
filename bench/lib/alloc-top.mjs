#!/usr/bin/env node
// Bytes allocated per function in a sampling heap profile written by
// bench/lib/alloc-sampling.mjs (or any .heapprofile).
//
//   node bench/lib/alloc-top.mjs FILE.heapprofile [--top 25]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '25' } }, allowPositionals: true });
if (positionals.length !== 1) {
  process.stderr.write('usage: node bench/lib/alloc-top.mjs FILE.heapprofile [--top 25]\n');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(positionals[0], 'utf8'));
const bytes = new Map();
let total = 0;
const stack = [profile.head];
while (stack.length > 0) {
  const node = stack.pop();
  const f = node.callFrame;
  const name = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}`;
  total += node.selfSize;
  bytes.set(name, (bytes.get(name) ?? 0) + node.selfSize);
  stack.push(...node.children);
}
console.log(`${positionals[0]}: ${(total / 1e6).toFixed(1)} MB sampled`);
for (const [name, n] of [...bytes].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
  console.log(`${(n / 1e6).toFixed(1).padStart(9)} MB ${((100 * n) / total).toFixed(1).padStart(5)}%  ${name}`);
}
