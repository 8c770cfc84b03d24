import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../src/paths.js';

export type Row = Record<string, string | number | null | undefined>;

/** Prints rows as an aligned text table (numbers right-aligned). */
export function printTable(title: string, rows: Row[]): void {
  if (rows.length === 0) return;
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: Row[string]) => (v === null || v === undefined ? '-' : typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 1 : Math.abs(v) >= 1 ? 2 : 4)) : v);
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[], nums: boolean[]) => vals.map((v, i) => (nums[i] ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join('  ');
  process.stdout.write(`\n${title}\n`);
  process.stdout.write(`${line(cols, cols.map(() => false))}\n`);
  process.stdout.write(`${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  for (const r of rows) process.stdout.write(`${line(cols.map((c) => cell(r[c])), cols.map((c) => typeof r[c] === 'number'))}\n`);
}

/** Machine facts recorded with every result: benchmarks are only comparable on the same machine. */
export function machineInfo() {
  const cpus = os.cpus();
  return { node: process.version, platform: `${os.platform()} ${os.arch()}`, cpu: cpus[0]?.model ?? 'unknown', cores: os.availableParallelism(), memoryGiB: Math.round(os.totalmem() / 2 ** 30) };
}

/** Writes bench/results/<name>-<timestamp>.json and bench/results/<name>-latest.json; returns the path. */
export function writeResult(name: string, result: unknown): string {
  const dir = path.join(PACKAGE_ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const body = JSON.stringify({ benchmark: name, date: new Date().toISOString(), machine: machineInfo(), result }, null, 2);
  const file = path.join(dir, `${name}-${stamp}.json`);
  fs.writeFileSync(file, body);
  fs.writeFileSync(path.join(dir, `${name}-latest.json`), body);
  process.stdout.write(`\nresults written to ${path.relative(process.cwd(), file)}\n`);
  return file;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export function summarize(values: readonly number[]) {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, min: s[0], p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99), max: s[s.length - 1], mean: s.reduce((a, b) => a + b, 0) / (s.length || 1) };
}

/** The value after `--name` in a benchmark's arguments, else `fallback`. */
export function arg(args: readonly string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1] : fallback;
}

/** Walks `--flag [value]` arguments in order; `value()` takes the argument after the flag (an error when there is none). */
export function eachOption(args: readonly string[], on: (flag: string, value: () => string) => void): void {
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    on(flag, () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    });
  }
}
