/**
 * Logging: readable single lines on a terminal (time, level, component, message, key=value
 * fields) or JSON lines for machines (`--log-json`). Secrets never reach the logger: callers log
 * identities, not credentials.
 */

/** Log levels, most verbose first. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const LABELS: Record<LogLevel, string> = { debug: 'DEBUG', info: 'INFO ', warn: 'WARN ', error: 'ERROR' };

/** A component logger. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger for a sub-component (name joined with '/'). */
  child(name: string): Logger;
  /** Logs at a level given at run time. */
  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void;
  /**
   * Whether lines of this level are written; hot paths ask before building a line (its message
   * and fields) that would be dropped. Optional: a logger without it is taken to write everything.
   */
  enabled?(level: LogLevel): boolean;
}

/** Options of a root logger. */
export interface LoggerOptions {
  level?: LogLevel;
  json?: boolean;
  write?: (line: string) => void;
}

const fmtValue = (v: unknown): string => {
  if (typeof v === 'string') return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  return JSON.stringify(v) ?? String(v);
};

/** Creates a root logger (defaults: info, readable, stderr; GWMO_LOG_LEVEL overrides the level). */
export function createLogger(name: string, opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? ((process.env.GWMO_LOG_LEVEL as LogLevel | undefined) ?? 'info');
  const min = ORDER[level] ?? 20;
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const make = (component: string): Logger => {
    const log = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
      if (ORDER[lvl] < min) return;
      if (opts.json) {
        write(JSON.stringify({ time: new Date().toISOString(), level: lvl, component, msg, ...fields }));
        return;
      }
      const t = new Date().toISOString().slice(11, 23);
      let extra = '';
      if (fields) {
        for (const k in fields) {
          const v = fields[k];
          if (v === undefined || !Object.prototype.hasOwnProperty.call(fields, k)) continue;
          extra += `${extra ? ' ' : ''}${k}=${fmtValue(v)}`;
        }
      }
      write(`${t} ${LABELS[lvl] ?? lvl.toUpperCase().padEnd(5)} ${component.padEnd(10)} ${msg}${extra ? '  ' + extra : ''}`);
    };
    return {
      log,
      enabled: (lvl) => ORDER[lvl] >= min,
      debug: (m, f) => log('debug', m, f),
      info: (m, f) => log('info', m, f),
      warn: (m, f) => log('warn', m, f),
      error: (m, f) => log('error', m, f),
      child: (n) => make(`${component}/${n}`),
    };
  };
  return make(name);
}

/** A logger that drops everything (library use, quiet tests). */
export const silentLogger: Logger = createLogger('silent', { level: 'error', write: () => {} });
