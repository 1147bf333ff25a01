#!/usr/bin/env node
/** Stand-alone entry for `bundle` commands (drills and crash tests spawn this compiled file). */
import { runBundleCli } from './cli.js';

runBundleCli(process.argv.slice(2), process.env).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exitCode = 1;
  },
);
