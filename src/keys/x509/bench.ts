// Micro-benchmark of X509-SVID issuance on one core: parse + verify a P-256 CSR, mint, re-parse and check.
// Run: npx tsx src/keys/x509/bench.ts [count]
import { generateKeyPairSync } from 'node:crypto';
import { generateRootCa } from './ca.ts';
import { parseCsr } from './csr.ts';
import { createCsr } from './csr-builder.ts';

const COUNT = Number(process.argv[2] ?? 2000);
const WARMUP = 200;

function run(label: string, curve: 'P-256' | 'P-384', csrs: readonly string[]): void {
  const ca = generateRootCa({
    trustDomain: 'bench.example',
    curve,
    ttlSeconds: 86_400,
    clock: Date.now,
    crlUrl: 'https://writ.bench.example/v1/crl',
  });
  const now = Math.floor(Date.now() / 1000);
  const issueOne = (pem: string, i: number): void => {
    const csr = parseCsr(pem);
    ca.issueX509Svid({
      spiffeId: `spiffe://bench.example/w/${i}`,
      spki: csr.spki,
      publicKey: csr.publicKey,
      notAfter: now + 900,
      now,
      backdate: 30,
    });
  };
  for (let i = 0; i < WARMUP; i++) issueOne(csrs[i % csrs.length]!, i);
  const start = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  for (let i = 0; i < csrs.length; i++) issueOne(csrs[i]!, i);
  const wall = Number(process.hrtime.bigint() - start) / 1e9;
  const used = process.cpuUsage(cpuStart);
  // CPU time as well as wall time: on a shared machine the wall clock also counts time spent waiting to run.
  const cpu = (used.user + used.system) / 1e6;
  const rate = (s: number): string =>
    `${Math.round(csrs.length / s)} certs/s, ${((s / csrs.length) * 1e6).toFixed(0)} µs/cert`;
  console.log(`${label}, ${csrs.length} certificates (parse + verify CSR + issue + re-parse check):`);
  console.log(`  wall ${wall.toFixed(3)} s: ${rate(wall)}`);
  console.log(`  cpu  ${cpu.toFixed(3)} s: ${rate(cpu)}`);
}

const csrs = Array.from({ length: COUNT }, () =>
  createCsr(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey),
);
run('P-256 CA', 'P-256', csrs);
run('P-384 CA', 'P-384', csrs);
