// The one door to Cedar: the Node build of cedar-wasm (loaded synchronously when first imported).
import { setFlagsFromString } from 'node:v8';

// V8 11.3 (Node 20) can crash the process ("Fatal error ... unreachable code" in
// Deoptimizer::DoComputeBuiltinContinuation) when TurboFan code that inlined a JS->Wasm call is lazily
// deoptimised while the Wasm call is on the stack: the policy engine's call into Cedar under sustained load
// (see docs/performance.md, "Broker crashes"). Not inlining JS->Wasm calls avoids that frame. Set before any
// call into Cedar is optimised; later V8s are left alone.
if (/^11\./.test(process.versions.v8)) setFlagsFromString('--no-turbo-inline-js-wasm-calls');

export type {
  AuthorizationAnswer,
  DetailedError,
  EntityJson,
  PolicyJson,
  SchemaJson,
  StatefulAuthorizationCall,
} from '@cedar-policy/cedar-wasm/nodejs';
export {
  checkParseSchema,
  isAuthorized,
  policySetTextToParts,
  policyToJson,
  preparsePolicySet,
  preparseSchema,
  schemaToJsonWithResolvedTypes,
  statefulIsAuthorized,
  validate,
} from '@cedar-policy/cedar-wasm/nodejs';
