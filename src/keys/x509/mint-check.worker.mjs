// The CA's signing and mint-check thread: signs each X.509-SVID's TBSCertificate, re-parses the certificate with
// OpenSSL, verifies its signature and checks every field, off the broker's event loop (see MintChecker, which
// also confirms that the certificate checked is the one the CA's template assembles).
import { X509Certificate } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { signAndReadBack } from './mint-check.mjs';

const ca = { ...workerData, issuer: new X509Certificate(workerData.issuerDer) };

parentPort.on('message', (request) => parentPort.postMessage(signAndReadBack(request, ca)));
