// The X.509 module: CSR parsing and key policy, the CA (X509-SVIDs, server certificates, CRLs), PEM helpers.
export {
  type CaBundleOptions,
  CertificateAuthority,
  type CrlEntry,
  type CrlReason,
  type CrlRequest,
  crlToPem,
  type GenerateRootCaOptions,
  generateRootCa,
  type IssuedCertificate,
  type IssuedServerCertificate,
  type LoadCaOptions,
  loadCa,
  type ServerCertificateRequest,
  type X509SvidRequest,
} from './ca.ts';
export {
  CSR_MAX_PEM_CHARS,
  type CsrSignatureAlgorithm,
  type ParsedCsr,
  parseCsr,
  parseCsrAsync,
  parseCsrDer,
} from './csr.ts';
export { createCsr } from './csr-builder.ts';
export { CaError, type CaErrorCode, CsrError, type CsrErrorCode } from './errors.ts';
export { toPem } from './pem.ts';
export { RSA_MAX_BITS, RSA_MIN_BITS, type SubjectKeyType } from './public-key.ts';
export type { CaKeyType, CaSignatureAlgorithm } from './template.ts';
