import sharp from 'sharp';
import type { ScoredPair } from './verification.js';
import { rocCurve } from './verification.js';

/**
 * An ROC curve (true accept rate against false accept rate, log-scaled FAR from 1e-4 to 1) as SVG,
 * one curve per model.
 */
export function rocSvg(curves: { label: string; pairs: readonly ScoredPair[] }[], width = 640, height = 480): string {
  const pad = { l: 60, r: 20, t: 30, b: 50 };
  const w = width - pad.l - pad.r;
  const h = height - pad.t - pad.b;
  const minLog = -4;
  const x = (far: number) => pad.l + ((Math.log10(Math.max(far, 10 ** minLog)) - minLog) / -minLog) * w;
  const y = (tar: number) => pad.t + (1 - tar) * h;
  const colors = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c'];
  const grid: string[] = [];
  for (let e = minLog; e <= 0; e++) {
    grid.push(`<line x1="${x(10 ** e)}" y1="${pad.t}" x2="${x(10 ** e)}" y2="${pad.t + h}" stroke="#ddd"/><text x="${x(10 ** e)}" y="${pad.t + h + 18}" font-size="12" text-anchor="middle">1e${e}</text>`);
  }
  for (let t = 0; t <= 10; t += 2) {
    grid.push(`<line x1="${pad.l}" y1="${y(t / 10)}" x2="${pad.l + w}" y2="${y(t / 10)}" stroke="#ddd"/><text x="${pad.l - 8}" y="${y(t / 10) + 4}" font-size="12" text-anchor="end">${(t / 10).toFixed(1)}</text>`);
  }
  const lines = curves.map((c, i) => {
    const pts = rocCurve(c.pairs).map((p) => `${x(p.far).toFixed(1)},${y(p.tar).toFixed(1)}`);
    const color = colors[i % colors.length];
    return `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.join(' ')}"/><text x="${pad.l + w - 10}" y="${pad.t + h - 12 - 18 * i}" font-size="13" text-anchor="end" fill="${color}">${c.label}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif"><rect width="100%" height="100%" fill="white"/>${grid.join('')}<rect x="${pad.l}" y="${pad.t}" width="${w}" height="${h}" fill="none" stroke="#333"/>${lines.join('')}<text x="${pad.l + w / 2}" y="${height - 10}" font-size="13" text-anchor="middle">false accept rate</text><text x="16" y="${pad.t + h / 2}" font-size="13" text-anchor="middle" transform="rotate(-90 16 ${pad.t + h / 2})">true accept rate</text><text x="${pad.l}" y="20" font-size="14">ROC</text></svg>`;
}

export async function rocFile(svg: string, file: string): Promise<Buffer> {
  return /\.png$/i.test(file) ? sharp(Buffer.from(svg)).png().toBuffer() : Buffer.from(svg);
}
