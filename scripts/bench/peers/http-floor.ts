// The HTTP layer alone, three ways, for scripts/bench/http-floors.ts: what one JSON POST costs on node:http, on
// express 5 with the body read by hand, and on express 5 with express.json (the broker's express routes).
// Run: node --import tsx scripts/bench/peers/http-floor.ts <port> <node|express-raw|express-json>.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';

const port = Number(process.argv[2] ?? 0);
const mode = process.argv[3] ?? 'node';

function answer(res: ServerResponse, body: { attestor?: unknown }): void {
  const out = JSON.stringify({ ok: true, attestor: body.attestor ?? null });
  res.writeHead(200, { 'Cache-Control': 'no-store', 'Content-Type': 'application/json; charset=utf-8' });
  res.end(out);
}

function readBody(req: IncomingMessage, then: (body: { attestor?: unknown }) => void): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => then(JSON.parse(Buffer.concat(chunks).toString('utf8')) as { attestor?: unknown }));
}

let handler: (req: IncomingMessage, res: ServerResponse) => void;
if (mode === 'node') {
  handler = (req, res) => readBody(req, (body) => answer(res, body));
} else if (mode === 'express-raw' || mode === 'express-json') {
  const app = express();
  app.disable('x-powered-by');
  if (mode === 'express-json') {
    app.post('/v1/svid/jwt', express.json({ limit: 64 * 1024 }), (req, res) => answer(res, req.body));
  } else {
    app.post('/v1/svid/jwt', (req, res) => readBody(req, (body) => answer(res, body)));
  }
  handler = app;
} else {
  throw new Error(`unknown mode ${mode}`);
}
const server = createServer(handler);
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ ready: true, port: (server.address() as AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
