#!/usr/bin/env node
// First, before the program's modules load: a SIGTERM or SIGHUP meanwhile is held, not fatal (cli/held-signals.ts).
import '../dist/cli/hold-startup.js';

await import('../dist/cli/main.js');
