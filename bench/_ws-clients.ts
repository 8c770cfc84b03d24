/**
 * Child process of bench/server.ts: N WebSocket clients of the live endpoint, in their own process
 * so that the clients' work (receiving, parsing) is not counted as the server's CPU. Measures
 * capture-to-client latency: the client's receive time minus the frame's capture time (one
 * machine, one clock). Driven over IPC: 'start' begins measuring, 'stop' replies with results.
 */
import { WebSocket } from 'ws';

interface Options {
  url: string;
  key: string;
  clients: number;
  jpeg: boolean;
}

const opts = JSON.parse(process.argv[2]) as Options;
let measuring = false;
const latencies: number[] = [];
/** Result ready to client: the fan-out's own share of the latency. */
const fanout: number[] = [];
let messages = 0;
let bytes = 0;
let cpuAtStart = process.cpuUsage();
let startedAt = 0;

type Header = { type?: string; capturedAt?: number; processedAt?: number };

function headerOf(data: Buffer, isBinary: boolean): Header {
  if (!isBinary) return JSON.parse(data.toString('utf8')) as Header;
  const n = data.readUInt32BE(0);
  return JSON.parse(data.subarray(4, 4 + n).toString('utf8')) as Header;
}

const query = opts.jpeg ? '?jpeg=true&fps=5&width=640' : '';
const sockets: WebSocket[] = [];
let hellos = 0;
for (let i = 0; i < opts.clients; i++) {
  const ws = new WebSocket(`${opts.url}/api/v1/live${query}`, { headers: { authorization: `Bearer ${opts.key}` } });
  ws.on('message', (data: Buffer, isBinary) => {
    const now = Date.now();
    const msg = headerOf(data, isBinary);
    if (msg.type === 'hello' && ++hellos === opts.clients) process.send!({ type: 'ready' });
    if (!measuring) return;
    messages++;
    bytes += data.length;
    if (msg.type === 'frame' && msg.capturedAt && msg.processedAt) {
      latencies.push(now - msg.capturedAt);
      fanout.push(now - msg.processedAt);
    }
  });
  ws.on('error', (err) => process.send!({ type: 'error', message: err.message }));
  sockets.push(ws);
}

process.on('message', (m: { type: string }) => {
  if (m.type === 'start') {
    latencies.length = 0;
    fanout.length = 0;
    messages = 0;
    bytes = 0;
    cpuAtStart = process.cpuUsage();
    startedAt = performance.now();
    measuring = true;
  } else if (m.type === 'stop') {
    measuring = false;
    const cpu = process.cpuUsage(cpuAtStart);
    const seconds = (performance.now() - startedAt) / 1000;
    process.send!({ type: 'result', latencies, fanout, messages, bytes, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 }, () => {
      for (const ws of sockets) ws.close();
      setTimeout(() => process.exit(0), 200);
    });
  }
});
