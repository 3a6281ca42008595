/** Placeholder until the PKCS#11 backend lands (issue 3). */
import { UnavailableError } from '../core/errors.js';
import type { MasterKey } from './backend.js';
import type { UnsealInputs } from './index.js';

export async function openPkcs11Master(_home: string, _inputs: UnsealInputs): Promise<MasterKey> {
  throw new UnavailableError('ERR_BACKEND', 'the pkcs11 backend is not available in this build');
}
