/** The stub OpenAI-compatible upstream used by the gateway tests (shared with bench and demo). */
export { startStubUpstream, type StubUpstream } from '../src/gateway/stub-upstream.js';
