/**
 * The `gwmo` command line: run a DM server or a simulated device, drive devices through the
 * server's API (get/replace/add/delete/exec/copy/results/devices), and run the demo.
 */
import { Command, Option } from 'commander';
import { loadConfig } from '../config.ts';
import { deviceConfigSchema } from '../device/config.ts';
import { SimDevice } from '../device/device.ts';
import { GwError, describeError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { serverConfigSchema } from '../server/config.ts';
import { DmServer } from '../server/server.ts';
import { gatewayConfigSchema } from '../gateway/config.ts';
import { Gateway } from '../gateway/gateway.ts';
import { DEFAULT_SERVER, callApi, statusText, table } from './client.ts';
import { runDemo } from './demo.ts';

const program = new Command();
program
  .name('gwmo')
  .description('Open OMA DM gateway runtime: DM server, simulated DM devices, operator commands.')
  .version('0.1.0')
  .showHelpAfterError()
  .addHelpText(
    'after',
    `
Examples:
  $ gwmo demo                                   run a server and three devices and show a management session
  $ gwmo server --config server.yaml --data ./data/server
  $ gwmo gateway --config gateway.yaml --data ./data/gw1
  $ gwmo device --config device.yaml --connect
  $ gwmo get IMEI:493005100592800 ./DevInfo/Mod
  $ gwmo replace IMEI:493005100592800 ./Vendor/Name kitchen --json`,
  );

const logOptions = (cmd: Command): Command =>
  cmd.option('--log-json', 'log JSON lines instead of readable text').addOption(new Option('--log-level <level>', 'log level').choices(['debug', 'info', 'warn', 'error']).default('info'));

/** Resolves on Ctrl-C or SIGTERM; a clean shutdown that takes longer than 5 s (or a second signal) exits anyway. */
function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      const force = (): never => process.exit(130);
      setTimeout(force, 5000).unref();
      process.once('SIGINT', force);
      process.once('SIGTERM', force);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}

logOptions(
  program
    .command('server')
    .description('run a DM server (SyncML DM over HTTP, operator API under /api)')
    .requiredOption('-c, --config <file>', 'server.yaml (listen, path, serverId, serverSecret, serverAuthType, accounts)')
    .option('-d, --data <dir>', 'data directory (LevelDB); overrides `data:` in the config')
    .option('-l, --listen <host:port>', 'overrides `listen:` in the config')
    .addHelpText('after', '\nExample:\n  $ gwmo server --config examples/server.yaml --data ./data/server'),
).action(async (opts: { config: string; data?: string; listen?: string; logJson?: boolean; logLevel: 'info' }) => {
  const config = await loadConfig(opts.config, serverConfigSchema);
  if (opts.listen) config.listen = opts.listen;
  const logger = createLogger('server', { json: !!opts.logJson, level: opts.logLevel });
  const server = await DmServer.create({ config, ...(opts.data ? { dataDir: opts.data } : {}), logger });
  await server.start();
  process.stdout.write(`DM endpoint ${server.dmUrl}\nOperator API ${server.url}/api\n`);
  await waitForSignal();
  logger.info('shutting down');
  await server.stop();
});

logOptions(
  program
    .command('device')
    .description('run a simulated DM client device (Package 0 listener, sessions with its server)')
    .requiredOption('-c, --config <file>', 'device.yaml (deviceId, server account, notify listener, nodes)')
    .option('-d, --data <dir>', 'data directory (LevelDB) for the device tree; in memory without it')
    .option('--connect', 'open a client-initiated session at start')
    .option('--once', 'open one client-initiated session, then exit (exit code 1 if it fails)')
    .addHelpText('after', '\nExample:\n  $ gwmo device --config examples/device.yaml --connect'),
).action(async (opts: { config: string; data?: string; connect?: boolean; once?: boolean; logJson?: boolean; logLevel: 'info' }) => {
  const config = await loadConfig(opts.config, deviceConfigSchema);
  const logger = createLogger('device', { json: !!opts.logJson, level: opts.logLevel }).child(config.deviceId);
  const device = await SimDevice.create({ config, ...(opts.data ? { dataDir: opts.data } : {}), logger });
  if (opts.once) {
    const r = await device.connect();
    await device.stop();
    process.exitCode = r.ok ? 0 : 1;
    return;
  }
  await device.start();
  process.stdout.write(`Package 0 listener ${device.notifyUrl}\n`);
  if (opts.connect) await device.connect();
  await waitForSignal();
  await device.stop();
});

logOptions(
  program
    .command('gateway')
    .description('run a DM gateway (DM client to its parent, DM server to its proxy-mode devices and child gateways)')
    .requiredOption('-c, --config <file>', 'gateway.yaml (id, parent, listen, path, serverId, serverSecret, serverAuthType, devices)')
    .option('-d, --data <dir>', 'data directory (LevelDB); overrides `data:` in the config')
    .addHelpText('after', '\nExample:\n  $ gwmo gateway --config examples/gateway.yaml --data .data/gw1'),
).action(async (opts: { config: string; data?: string; logJson?: boolean; logLevel: 'info' }) => {
  const config = await loadConfig(opts.config, gatewayConfigSchema);
  const logger = createLogger('gateway', { json: !!opts.logJson, level: opts.logLevel }).child(config.id);
  const gateway = await Gateway.create({ config, ...(opts.data ? { dataDir: opts.data } : {}), logger });
  await gateway.start();
  process.stdout.write(`Gateway ${config.id}: southbound DM endpoint ${gateway.southUrl}\nPackage 0 listener ${gateway.north.notifyUrl}\n`);
  await waitForSignal();
  await gateway.stop();
});

/** Common options of the operator commands. */
function operatorCommand(name: string, args: string, description: string, example: string): Command {
  return program
    .command(`${name} ${args}`)
    .description(description)
    .option('-s, --server <url>', 'server API base URL (or GWMO_SERVER)', DEFAULT_SERVER)
    .option('--json', 'print JSON for scripts')
    .option('--no-wait', 'only queue the command; the device gets it in its next session')
    .option('--no-notify', 'do not send a Package 0 to wake the device')
    .option('-t, --timeout <seconds>', 'how long to wait for the result', (v) => Number(v), 60)
    .addHelpText('after', `\nExample:\n  $ ${example}`);
}

interface OperatorOpts {
  server: string;
  json?: boolean;
  wait: boolean;
  notify: boolean;
  timeout: number;
  format?: string;
  type?: string;
  correlator?: string;
}

async function runOperator(device: string, body: Record<string, unknown>, opts: OperatorOpts): Promise<void> {
  const { status, json } = await callApi(opts.server, 'POST', `api/devices/${encodeURIComponent(device)}/commands`, {
    ...body,
    wait: opts.wait,
    notify: opts.notify,
    timeout: opts.timeout,
  });
  if (opts.json) {
    process.stdout.write(JSON.stringify(json, null, 2) + '\n');
  } else if (json.state !== 'done') {
    process.stdout.write(
      status === 202 && opts.wait
        ? `queued as ${json.id}; no result within ${opts.timeout}s (the device gets it in its next session; see \`gwmo results ${device}\`)\n`
        : `queued as ${json.id}\n`,
    );
  } else {
    process.stdout.write(`${json.cmd} ${json.target}: ${statusText(json.status)}\n`);
    if (json.statuses?.length > 1) {
      process.stdout.write(table(['#', 'cmd', 'target', 'status'], json.statuses.map((s: any) => [s.path.join('.') || '-', s.cmd, s.target, statusText(s.status)])) + '\n');
    }
    for (const r of json.results ?? []) process.stdout.write(`${r.uri} = ${r.data ?? ''}${r.format && r.format !== 'chr' ? `  (${r.format})` : ''}\n`);
  }
  if (json.state === 'done' && json.status >= 300) process.exitCode = 1;
}

operatorCommand('get', '<device> <uri>', 'read a node (add ?list=Struct or ?prop=ACL to the URI for structure or properties)', 'gwmo get IMEI:1 "./DevInfo?list=Struct"').action(
  (device: string, uri: string, opts: OperatorOpts) => runOperator(device, { cmd: 'Get', uri }, opts),
);
operatorCommand('replace', '<device> <uri> <value>', "replace a node's value", 'gwmo replace IMEI:1 ./Vendor/Name kitchen')
  .option('-f, --format <format>', 'Meta Format (chr, int, bool, b64, ...)')
  .option('--type <mime>', 'Meta Type')
  .action((device: string, uri: string, value: string, opts: OperatorOpts) =>
    runOperator(device, { cmd: 'Replace', uri, value, ...(opts.format ? { format: opts.format } : {}), ...(opts.type ? { type: opts.type } : {}) }, opts),
  );
operatorCommand('add', '<device> <uri> [value]', 'add a node (use --format node for an interior node)', 'gwmo add IMEI:1 ./Vendor/Rooms --format node')
  .option('-f, --format <format>', 'Meta Format (node, chr, int, ...)')
  .option('--type <mime>', 'Meta Type')
  .action((device: string, uri: string, value: string | undefined, opts: OperatorOpts) =>
    runOperator(
      device,
      { cmd: 'Add', uri, ...(value !== undefined ? { value } : {}), ...(opts.format ? { format: opts.format } : {}), ...(opts.type ? { type: opts.type } : {}) },
      opts,
    ),
  );
operatorCommand('delete', '<device> <uri>', 'delete a node and its subtree', 'gwmo delete IMEI:1 ./Vendor/Rooms').action(
  (device: string, uri: string, opts: OperatorOpts) => runOperator(device, { cmd: 'Delete', uri }, opts),
);
operatorCommand('exec', '<device> <uri> [data]', 'execute a node', 'gwmo exec IMEI:1 ./Vendor/Counter')
  .option('--correlator <id>', 'correlator for an asynchronous result (Generic Alert)')
  .action((device: string, uri: string, data: string | undefined, opts: OperatorOpts) =>
    runOperator(device, { cmd: 'Exec', uri, ...(data !== undefined ? { value: data } : {}), ...(opts.correlator ? { correlator: opts.correlator } : {}) }, opts),
  );
operatorCommand('copy', '<device> <target> <source>', "copy a leaf's value onto another leaf", 'gwmo copy IMEI:1 ./Vendor/Name ./DevInfo/Mod').action(
  (device: string, target: string, source: string, opts: OperatorOpts) => runOperator(device, { cmd: 'Copy', uri: target, source }, opts),
);

program
  .command('results <device>')
  .description('list the commands sent to a device and their results')
  .option('-s, --server <url>', 'server API base URL (or GWMO_SERVER)', DEFAULT_SERVER)
  .option('--json', 'print JSON for scripts')
  .addHelpText('after', '\nExample:\n  $ gwmo results IMEI:1 --json')
  .action(async (device: string, opts: { server: string; json?: boolean }) => {
    const { json } = await callApi(opts.server, 'GET', `api/devices/${encodeURIComponent(device)}/commands`);
    if (opts.json) {
      process.stdout.write(JSON.stringify(json, null, 2) + '\n');
      return;
    }
    const rows = json.commands.map((c: any) => [
      c.id,
      c.cmd,
      c.target,
      c.state,
      c.state === 'done' ? statusText(c.status) : '',
      (c.results ?? []).map((r: any) => r.data).join(' | ').slice(0, 60),
    ]);
    process.stdout.write(rows.length ? table(['id', 'cmd', 'target', 'state', 'status', 'data'], rows) + '\n' : 'no commands\n');
  });

program
  .command('devices')
  .description('list the devices the server has accounts for')
  .option('-s, --server <url>', 'server API base URL (or GWMO_SERVER)', DEFAULT_SERVER)
  .option('--json', 'print JSON for scripts')
  .action(async (opts: { server: string; json?: boolean }) => {
    const { json } = await callApi(opts.server, 'GET', 'api/devices');
    if (opts.json) {
      process.stdout.write(JSON.stringify(json, null, 2) + '\n');
      return;
    }
    const rows = json.devices.map((d: any) => [d.deviceId, d.devInfo?.Mod, d.via ? `${d.via} (${d.mode ?? '?'})` : 'direct', d.sessions, d.pending, d.lastSessionAt]);
    process.stdout.write(table(['device', 'model', 'route', 'sessions', 'pending', 'last session'], rows) + '\n');
  });

program
  .command('demo')
  .description('start a DM server and three simulated devices in-process and run a visible management session')
  .option('--json', 'print the session results as JSON')
  .option('--keep', 'keep running after the demo (Ctrl-C to stop) so you can try the CLI against it')
  .option('-l, --listen <host:port>', 'where the demo server listens', '127.0.0.1:0')
  .action(async (opts: { json?: boolean; keep?: boolean; listen: string }) => {
    await runDemo({ json: !!opts.json, keep: !!opts.keep, listen: opts.listen, waitForSignal });
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const code = err instanceof GwError ? err.code : 'ERROR';
  process.stderr.write(`gwmo: ${describeError(err)}\n`);
  process.exitCode = code.startsWith('CONFIG_') ? 2 : 1;
}
