/**
 * `npm run bench -- <name> [options]` runs bench/<name>.ts: each benchmark prints a table and
 * writes its JSON under bench/results/. Benchmarks are measurements, never pass/fail tests.
 */
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const available = fs
  .readdirSync(here)
  .filter((f) => f.endsWith('.js') && !['run.js', 'report.js'].includes(f) && !f.startsWith('_'))
  .map((f) => f.replace(/\.js$/, ''));

const [name, ...rest] = process.argv.slice(2);
if (!name || !available.includes(name)) {
  process.stderr.write(`usage: npm run bench -- <${available.join('|')}> [options]\n`);
  process.exit(2);
}
const mod = (await import(path.join(here, `${name}.js`))) as { run: (args: string[]) => Promise<void> };
await mod.run(rest);
