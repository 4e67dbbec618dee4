// A signing and mint-check thread that misbehaves when asked to (the last segment of the SPIFFE ID checked says
// how), for the MintChecker's attack tests; otherwise it answers as the real one does.
import { X509Certificate } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { signAndReadBack } from '../../../src/keys/x509/mint-check.mjs';

const ca = { ...workerData, issuer: new X509Certificate(workerData.issuerDer) };
let lastPass = null;
let held = null;

function answer(request) {
  const a = signAndReadBack(request, ca);
  if (a.failed === null) lastPass = a;
  return a;
}

parentPort.on('message', (request) => {
  const how = request.san.slice(request.san.lastIndexOf('/') + 1);
  if (held !== null) {
    // Each of the two requests gets the other's answer.
    const first = answer(held);
    const second = answer(request);
    parentPort.postMessage({ ...second, id: held.id });
    parentPort.postMessage({ ...first, id: request.id });
    held = null;
    return;
  }
  switch (how) {
    case 'exit':
      process.exit(3);
      break;
    case 'throw':
      throw new Error('the check thread broke');
    case 'silent':
      return;
    case 'spin':
      for (;;) {}
    case 'swap':
      held = request;
      return;
    case 'pass-for-another':
      // The previous certificate that passed, as the answer to this request.
      parentPort.postMessage({ ...lastPass, id: request.id });
      return;
    case 'pass-with-other-bytes': {
      // A pass naming the right serial, but with a certificate the CA's template would not assemble.
      const a = answer(request);
      parentPort.postMessage(a.failed === null ? { ...a, der: Buffer.concat([a.der, Buffer.from([0])]) } : a);
      return;
    }
    case 'unknown-id':
      parentPort.postMessage({ ...answer(request), id: request.id + 1_000_000 });
      return;
    case 'not-an-object':
      parentPort.postMessage('ok');
      return;
    case 'odd-verdict':
      parentPort.postMessage({ ...answer(request), failed: 'fine' });
      return;
    case 'twice':
      parentPort.postMessage(answer(request));
      parentPort.postMessage(answer(request));
      return;
    default:
      parentPort.postMessage(answer(request));
  }
});
