#!/usr/bin/env node
// The agent runs on small edge boxes with a memory budget (DESIGN §7). V8
// grows its young generation up to 2 × 16 MB semi-spaces under a steady
// allocation rate; most of what the agent allocates (parsed requests, group
// commits) dies within a commit, so holding the semi-spaces at their initial
// size costs no throughput (measured: bench/agent-buffer.mjs, docs/performance.md)
// and keeps tens of MB out of RSS. Heap-size flags such as
// --max-semi-space-size are read once at heap setup and are ignored here;
// the growth factor is read at every resize, so it works when set this early.
// METEORZX_AGENT_V8_FLAGS overrides the list ('' for V8's defaults).
if (process.argv[2] === 'agent') {
  const { setFlagsFromString } = await import('node:v8');
  const flags = process.env.METEORZX_AGENT_V8_FLAGS ?? '--semi-space-growth-factor=1';
  for (const flag of flags.split(/\s+/).filter(Boolean)) setFlagsFromString(flag);
}
await import('../dist/cli/main.js');
