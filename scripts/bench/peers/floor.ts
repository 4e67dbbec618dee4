// Floor for scenarios 1 and 2: a bare express 5 app that parses the same JSON body and answers a small JSON.
// Run: node --import tsx scripts/bench/peers/floor.ts <port>; prints {"ready":true,"port":N} when listening.
import type { AddressInfo } from 'node:net';
import express from 'express';

const port = Number(process.argv[2] ?? 0);
const app = express();
app.disable('x-powered-by');
app.use(express.json({ limit: 64 * 1024 }));
app.post('/v1/svid/jwt', (req, res) => {
  const body = req.body as { attestor?: unknown };
  res
    .status(200)
    .set('Cache-Control', 'no-store')
    .json({ ok: true, attestor: body.attestor ?? null });
});
app.post('/v1/svid/x509', (req, res) => {
  const body = req.body as { attestor?: unknown };
  res
    .status(200)
    .set('Cache-Control', 'no-store')
    .json({ ok: true, attestor: body.attestor ?? null });
});
const server = app.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ ready: true, port: (server.address() as AddressInfo).port })}\n`);
});
server.keepAliveTimeout = 65_000;
process.on('SIGTERM', () => server.close(() => process.exit(0)));
