/**
 * The demo's story, in order. A capability shows itself by adding a step module here; steps
 * number themselves. Later steps may use what earlier ones put in `d.keys` and `d.summary`.
 */
import type { DemoStep } from './context.js';
import { deriveStep, initStep, issueStep, listStep, presentStep, revokeStep, unsealStep } from './keys.js';
import { gatewayStep } from './gateway.js';
import { monitoringStep } from './monitoring.js';
import { usageStep } from './usage.js';
import { replicasStep } from './replicas.js';
import { emergencyStep, rotateStep } from './rotation.js';
import { deliveryStep } from './delivery.js';
import { auditRowsStep, verifyStep } from './audit.js';
import { hsmStep } from './hsm.js';
import { operatorsStep } from './operators.js';
import { statusStep } from './status.js';
import { doctorStep } from './doctor.js';
import { backupStep } from './backup.js';

export const DEMO_STEPS: DemoStep[] = [
  initStep,
  unsealStep,
  issueStep,
  listStep,
  deriveStep,
  presentStep,
  revokeStep,
  gatewayStep,
  monitoringStep,
  usageStep,
  replicasStep,
  rotateStep,
  emergencyStep,
  deliveryStep,
  verifyStep,
  hsmStep,
  operatorsStep,
  backupStep,
  statusStep,
  doctorStep,
  auditRowsStep,
];
