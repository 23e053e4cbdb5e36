/**
 * A real KNXnet/IP server for tests and demos: Debian `knxd` over a dummy bus, serving tunnelling
 * (`ets_router`) on a UDP port picked per run, and a unix socket for `knxtool` (an independent,
 * non-Node KNX client). The dummy bus has no devices of its own: simulated devices are further
 * tunnel clients (see `sim.ts`). knxd binds 0.0.0.0 whatever its ini says (design/peers.md), so the
 * port is probed free per run and every client talks to 127.0.0.1 only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GwError } from '../../src/errors.ts';

/** Options of a knxd run. */
export interface KnxdOptions {
  /** UDP port of the KNXnet/IP server; a free one when absent. */
  port?: number;
  /** Directory for the ini and the unix socket; a fresh temp dir (removed on stop) when absent. */
  dir?: string;
  /** Tunnel connections knxd accepts at once (each gets an address from 0.0.2 upwards). */
  tunnels?: number;
  /** Milliseconds to wait for readiness. */
  readyMs?: number;
}

/** A running knxd. */
export interface Knxd {
  /** UDP port of its KNXnet/IP tunnelling server (on 127.0.0.1 for our clients). */
  readonly port: number;
  /** Its unix socket path. */
  readonly socket: string;
  /** The knxtool URL of the unix socket, e.g. `local:/tmp/x/knxd.sock`. */
  readonly url: string;
  /** PID of the knxd process now (changes on restart). */
  readonly pid: number | undefined;
  /** What knxd wrote to stdout/stderr, for test diagnostics. */
  output(): string;
  /** Kills knxd (SIGTERM, then SIGKILL) and waits for it to exit; keeps the directory. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts knxd again on the same port and socket (after `kill`). */
  restart(): Promise<void>;
  /** Stops knxd and removes a temp dir it created. */
  stop(): Promise<void>;
}

/** A UDP port nobody uses now (probed on 127.0.0.1; knxd then binds it on 0.0.0.0). */
export async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => resolve());
  });
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The ini of design/peers.md: dummy bus, tunnelling server, unix socket. */
function ini(port: number, socket: string, tunnels: number): string {
  return [
    '[main]',
    'addr = 0.0.1',
    `client-addrs = 0.0.2:${tunnels}`,
    'connections = server,bus,unixsock',
    '[server]',
    'server = ets_router',
    'tunnel = tunnel',
    'interface = lo',
    `port = ${port}`,
    '[tunnel]',
    '[bus]',
    'driver = dummy',
    '[unixsock]',
    'server = knxd_unix',
    `path = ${socket}`,
    '',
  ].join('\n');
}

/**
 * Whether a KNXnet/IP server answers on 127.0.0.1:port: a CONNECTIONSTATE_REQUEST for a channel
 * nobody holds gets a CONNECTIONSTATE_RESPONSE (E_CONNECTION_ID) from a live server.
 */
export function knxnetAnswers(port: number, ms = 300): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.close();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), ms);
    s.on('error', () => finish(false));
    s.on('message', (m) => finish(m.length >= 4 && m.readUInt16BE(2) === 0x0208));
    // header (06 10, service 0x0207, length 16), channel 0xfe, reserved, HPAI 0.0.0.0:0 (NAT: answer the sender)
    const req = Buffer.from([0x06, 0x10, 0x02, 0x07, 0x00, 0x10, 0xfe, 0x00, 0x08, 0x01, 0, 0, 0, 0, 0, 0]);
    s.bind(0, '127.0.0.1', () => s.send(req, port, '127.0.0.1'));
  });
}

/**
 * Stops the knxd recorded in `pidPath` if it still runs with this `iniPath` (checked in
 * /proc/<pid>/cmdline, so a recycled pid of another program is never signalled).
 */
async function stopStale(pidPath: string, iniPath: string): Promise<void> {
  const pid = Number((await readFile(pidPath, 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 0) return;
  const isOurs = async (): Promise<boolean> => {
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    return cmd.split('\0').includes(iniPath) && /(^|\/)knxd$/.test(cmd.split('\0')[0] ?? '');
  };
  if (await isOurs()) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 40 && (await isOurs()); i++) await new Promise((r) => setTimeout(r, 50));
    if (await isOurs()) process.kill(pid, 'SIGKILL');
  }
  await rm(pidPath, { force: true });
}

/** Starts knxd and resolves once its tunnelling server answers. */
export async function startKnxd(opts: KnxdOptions = {}): Promise<Knxd> {
  const ownDir = !opts.dir;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'gwmo-knxd-')));
  const socket = join(dir, 'knxd.sock');
  const iniPath = join(dir, 'knxd.ini');
  const readyMs = opts.readyMs ?? 5000;
  let port = opts.port ?? (await freeUdpPort());
  let proc: ChildProcess | undefined;
  let out = '';

  const pidPath = join(dir, 'knxd.pid');
  const launch = async (): Promise<void> => {
    // A knxd left running by a process that was killed (SIGKILL, a crash) on this directory would
    // hold the bus and the socket: stop it first.
    await stopStale(pidPath, iniPath);
    await rm(socket, { force: true });
    await writeFile(iniPath, ini(port, socket, opts.tunnels ?? 32));
    const p = spawn('knxd', [iniPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc = p;
    if (p.pid !== undefined) await writeFile(pidPath, `${p.pid}\n`);
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (out += d));
    let exited = false;
    p.once('exit', () => (exited = true));
    p.once('error', (err) => {
      exited = true;
      out += `spawn failed: ${err.message}\n`;
    });
    const deadline = Date.now() + readyMs;
    while (!(await knxnetAnswers(port, 150))) {
      if (exited) throw new GwError('KNXD_EXITED', `knxd exited before it was ready (port ${port}): ${out.trim()}`);
      if (Date.now() > deadline) {
        await kill('SIGKILL');
        throw new GwError('KNXD_NOT_READY', `knxd did not answer on UDP ${port} within ${readyMs} ms: ${out.trim()}`);
      }
    }
  };

  const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const hard = setTimeout(() => p.kill('SIGKILL'), 2000);
      p.once('exit', () => {
        clearTimeout(hard);
        resolve();
      });
      p.kill(signal);
    });
    await rm(pidPath, { force: true });
  };

  // A port probed free can be taken by someone else before knxd binds it: try a few.
  for (let attempt = 1; ; attempt++) {
    try {
      await launch();
      break;
    } catch (err) {
      if (opts.port !== undefined || attempt >= 3) {
        if (ownDir) await rm(dir, { recursive: true, force: true });
        throw err;
      }
      port = await freeUdpPort();
    }
  }

  return {
    get port() {
      return port;
    },
    socket,
    url: `local:${socket}`,
    get pid() {
      return proc?.pid;
    },
    output: () => out,
    kill,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: async () => {
      await kill();
      if (ownDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A `knxtool groupsocketlisten` running against a knxd: an independent observer of group telegrams. */
export interface GroupListener {
  /** Lines like `Write from 1.1.250 to 1/2/3: 01`, in arrival order. */
  readonly lines: string[];
  /** Stops the listener and waits for it to exit. */
  stop(): Promise<void>;
}

/** Starts `knxtool groupsocketlisten` on knxd's unix socket (line-buffered through stdbuf). */
export async function listenGroups(knxd: Pick<Knxd, 'url'>): Promise<GroupListener> {
  const lines: string[] = [];
  let rest = '';
  const p = spawn('stdbuf', ['-oL', 'knxtool', 'groupsocketlisten', knxd.url], { stdio: ['ignore', 'pipe', 'pipe'] });
  p.stdout!.on('data', (d: Buffer) => {
    rest += d.toString();
    const parts = rest.split('\n');
    rest = parts.pop()!;
    for (const l of parts) if (l.trim()) lines.push(l.trim());
  });
  p.stderr!.on('data', () => {});
  // knxtool opens the socket at once; give it a moment so no telegram sent right after is missed.
  await new Promise((r) => setTimeout(r, 150));
  if (p.exitCode !== null) throw new GwError('KNXTOOL_EXITED', `knxtool groupsocketlisten exited with ${p.exitCode}`);
  return {
    lines,
    stop: () =>
      new Promise<void>((resolve) => {
        if (p.exitCode !== null || p.signalCode !== null) return resolve();
        p.once('exit', () => resolve());
        p.kill('SIGTERM');
      }),
  };
}

/** Runs `knxtool groupwrite <url> <ga> <hex bytes...>` (a non-Node client writing to the bus). */
export function knxtoolWrite(knxd: Pick<Knxd, 'url'>, ga: string, bytes: number[], small = false): Promise<void> {
  const args = small ? ['groupswrite', knxd.url, ga, String(bytes[0] ?? 0)] : ['groupwrite', knxd.url, ga, ...bytes.map((b) => b.toString(16).padStart(2, '0'))];
  return new Promise((resolve, reject) => {
    const p = spawn('knxtool', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (d) => (err += d));
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new GwError('KNXTOOL_FAILED', `knxtool ${args[0]} exited ${code}: ${err.trim()}`))));
  });
}
