#!/usr/bin/env node
// Where the time goes: self time per function (and per package) of a V8
// .cpuprofile, as `node --cpu-prof` writes it. Used to explain a missed budget.
//
//   node bench/lib/profile-top.mjs FILE.cpuprofile [--top 20]
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

/** `{total, functions: [{name, where, selfMs, share}], packages: [{name, selfMs, share}]}` from a parsed profile. */
export function selfTimes(profile, top = 20) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = profile.timeDeltas ?? [];
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (dt[i] ?? 0)));
  const fns = new Map();
  const pkgs = new Map();
  let total = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (n === undefined) continue;
    total += us;
    const cf = n.callFrame;
    const where = cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : '';
    const key = `${cf.functionName || '(anonymous)'} ${where}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
    const pkg = packageOf(cf.url, cf.functionName);
    pkgs.set(pkg, (pkgs.get(pkg) ?? 0) + us);
  }
  const rank = (m) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => ({ name, selfMs: us / 1000, share: total > 0 ? us / total : 0 }));
  return { totalMs: total / 1000, functions: rank(fns), packages: rank(pkgs) };
}

/** `node_modules/<pkg>`, our top folder (`dist/gateway/pipeline`), `node:internal`, or the V8 bucket ("(garbage collector)", "(program)", "(idle)"). */
export function packageOf(url, functionName = '') {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1];
  const ours = /\/dist\/([^/]+\/[^/]+)/.exec(url);
  if (ours) return `dist/${ours[1]}`;
  if (url.startsWith('node:')) return 'node:internal';
  return shortUrl(url);
}

function shortUrl(url) {
  return url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '20' } } });
  for (const file of positionals) {
    const r = selfTimes(JSON.parse(await readFile(file, 'utf8')), Number(values.top));
    console.log(`\n${file}: ${r.totalMs.toFixed(0)} ms sampled`);
    console.log('by package / folder:');
    for (const p of r.packages) console.log(`  ${(p.share * 100).toFixed(1).padStart(5)}%  ${p.selfMs.toFixed(0).padStart(7)} ms  ${p.name}`);
    console.log('by function (self time):');
    for (const f of r.functions) console.log(`  ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.selfMs.toFixed(0).padStart(7)} ms  ${f.name}`);
  }
}
