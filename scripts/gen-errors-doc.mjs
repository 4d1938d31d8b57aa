// Regenerates docs/errors.md from the error catalogues (run after `npm run build`):
//   node scripts/gen-errors-doc.mjs
// test/unit/error-catalogue.test.ts fails when a code is missing from the doc.
import { writeFileSync } from 'node:fs';

const sides = [
  ['Protocol (both sides)', '../dist/protocols/errors.js', 'ProtocolErrors'],
  ['Protocol (both sides)', '../dist/protocols/canonical.js', 'CanonicalErrors'],
  ['Common (config, CLI)', '../dist/common/errors.js', 'CommonErrors'],
  ['Agent', '../dist/agent/errors.js', 'AgentErrors'],
  ['Gateway', '../dist/gateway/errors.js', 'GatewayErrors'],
];

let out = `# Error codes

Every error MeteorZX raises carries a stable \`code\` (and \`cause\` when it
wraps another). HTTP answers carry it as \`{"error": "...", "code": "..."}\`;
the CLI prints one line \`meteorzx: <message>\` and exits non-zero (set
\`METEORZX_DEBUG=1\` for a stack trace). The catalogues are
\`protocols/errors.ts\`, \`protocols/canonical.ts\`, \`common/errors.ts\`,
\`agent/errors.ts\` and \`gateway/errors.ts\`; this page is generated from
them by \`node scripts/gen-errors-doc.mjs\`.
`;
let current = '';
for (const [title, path, name] of sides) {
  const mod = await import(new URL(path, import.meta.url));
  const specs = mod[name].specs;
  if (title !== current) {
    out += `\n## ${title}\n\n| code | HTTP | meaning |\n|---|---|---|\n`;
    current = title;
  }
  for (const [code, spec] of Object.entries(specs)) {
    out += `| \`${code}\` | ${spec.status ?? ''} | ${spec.description.replace(/\|/g, '\\|')} |\n`;
  }
}
writeFileSync(new URL('../docs/errors.md', import.meta.url), out);
console.log('wrote docs/errors.md');
