import type { Command } from 'commander';
import { keyIdArg } from '../key-id.js';
import { ctxOf, type Ctx } from '../context.js';
import { line, printJson } from '../render.js';
import { withHome, withUnsealed } from '../session.js';
import { withUnsealOptions } from '../secrets.js';
import { assertExportable, checkK8sName, envLines, exportKey, k8sSecret, type ExportFormat } from '../../app/export.js';
import { getKey } from '../../app/keys.js';
import { writePrivateFile } from '../../kernel/files.js';
import { UsageError } from '../../kernel/errors.js';
import { iso } from '../../kernel/clock.js';
import { alertRules, type AlertsConfig } from '../../domain/alert-rules.js';
import { prometheusRules } from '../../domain/prometheus-rules.js';

interface Opts {
  name: string;
  namespace?: string;
  prefix: string;
  out?: string;
}

export function register(program: Command): void {
  const exp = program.command('export').description('hand a key to a workload (Kubernetes Secret manifest, env lines); the alerts as Prometheus rules');
  withUnsealOptions(
    exp
      .command('k8s <id>')
      .description('print a Kubernetes Secret (type Opaque, data.API_KEY and data.API_SECRET base64) for kubectl apply -f -')
      .option('--name <name>', 'the Secret name', 'deepseek-api-secrets')
      .option('--namespace <ns>', 'the namespace')
      .option('--out <file>', 'write to this new file (0600) instead of stdout'),
  )
    .addHelpText('after', '\nExamples:\n  dsk export k8s 3f9a2c7d1e8b --namespace llm | kubectl apply -f -\n  dsk export k8s 3f9a2c7d1e8b --name chat-frontend-key --out secret.yaml')
    .action((id: string, o: Opts, c: Command) => run(ctxOf(c), id, 'k8s', o));
  withUnsealOptions(
    exp
      .command('env <id>')
      .description('print DEEPSEEK_API_KEY=… and DEEPSEEK_API_SECRET=… lines (an env file)')
      .option('--prefix <p>', 'variable name prefix', 'DEEPSEEK')
      .option('--out <file>', 'write to this new file (0600) instead of stdout'),
  )
    .addHelpText('after', '\nExamples:\n  dsk export env 3f9a2c7d1e8b --out /etc/chat-frontend/deepseek.env\n  dsk export env 3f9a2c7d1e8b --json')
    .action((id: string, o: Opts, c: Command) => run(ctxOf(c), id, 'env', o));
  exp
    .command('prometheus-rules')
    .description('print the alerts of dsk.json as a Prometheus rules file (for rule_files in prometheus.yml)')
    .option('--out <file>', 'write to this new file instead of stdout')
    .addHelpText('after', '\nExamples:\n  dsk export prometheus-rules > /etc/prometheus/rules/dsk.yml && promtool check rules /etc/prometheus/rules/dsk.yml\n  dsk export prometheus-rules --json')
    .action((o: { out?: string }, c: Command) => rules(ctxOf(c), o));
}

async function rules(ctx: Ctx, o: { out?: string }): Promise<void> {
  const alerts = await withHome(ctx, { permission: null, readonly: true }, async (h) => alertRules(h.config.alerts as AlertsConfig | undefined));
  const text = prometheusRules(alerts);
  if (o.out) {
    writePrivateFile(o.out, text, { exclusive: true });
    if (ctx.json) return printJson({ format: 'prometheus-rules', alerts: alerts.length, written_to: o.out });
    return line(`wrote ${alerts.length} alert rule(s) to ${o.out}`);
  }
  if (ctx.json) return printJson({ format: 'prometheus-rules', alerts: alerts.length, names: alerts.map((a) => a.name), content: text });
  process.stdout.write(text);
}

async function run(ctx: Ctx, id: string, format: ExportFormat, o: Opts): Promise<void> {
  keyIdArg(id);
  if (format === 'k8s') {
    checkK8sName(o.name, '--name');
    if (o.namespace !== undefined) checkK8sName(o.namespace, '--namespace');
  } else if (!/^[A-Z_][A-Z0-9_]{0,63}$/.test(o.prefix)) throw new UsageError('ERR_ENV_PREFIX', `invalid --prefix '${o.prefix}': use upper-case letters, digits and _`);
  await withHome(ctx, { permission: null, readonly: true }, async (h) => assertExportable(await getKey(h, id)));
  const e = await withUnsealed(ctx, o as object, { permission: 'key.manage', sensitive: true }, (h) => exportKey(h, id, format));
  const text = format === 'k8s' ? k8sSecret(e, { name: o.name, namespace: o.namespace }) : envLines(e, o.prefix);
  if (o.out) {
    writePrivateFile(o.out, text, { exclusive: true });
    if (ctx.json) return printJson({ id, format, written_to: o.out });
    return line(`wrote ${format === 'k8s' ? 'Kubernetes Secret' : 'env file'} for key ${id} to ${o.out} (0600)`);
  }
  if (ctx.json)
    return printJson({ id, format, name: e.row.name, role: e.row.role, status: e.row.status, created_at: iso(e.row.created_at), expires_at: iso(e.row.expires_at), api_key: e.apiKey, api_secret: e.apiSecret, content: text });
  process.stdout.write(text);
}
