/**
 * Loading YAML configuration files with a zod schema. Errors name the file, the line and the
 * field, and `${ENV}` references let secrets come from the environment instead of the file.
 */
import { readFile } from 'node:fs/promises';
import { LineCounter, isNode, parseDocument } from 'yaml';
import { z } from 'zod';
import { parseAuthType, type AuthType } from './codec/auth.ts';
import { GwError } from './errors.ts';

/** Replaces `${NAME}` in string values by the environment variable NAME (error when unset). */
function expandEnv(value: unknown, path: (string | number)[], file: string): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const v = process.env[name];
      if (v === undefined) throw new GwError('CONFIG_ENV', `${file}: ${path.join('.')} refers to \${${name}}, which is not set`);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, [...path, i], file));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandEnv(v, [...path, k], file)]));
  }
  return value;
}

/** Parses and validates YAML text; `file` is used in messages. */
export function parseConfig<S extends z.ZodType>(text: string, schema: S, file: string): z.output<S> {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: true });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    const pos = e.linePos?.[0];
    throw new GwError('CONFIG_YAML', `${file}${pos ? `:${pos.line}:${pos.col}` : ''}: ${e.message.split('\n')[0]}`);
  }
  const raw = expandEnv(doc.toJS() ?? {}, [], file);
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    // Point at the deepest node that exists in the file.
    let line: number | undefined;
    for (let n = path.length; n >= 0 && line === undefined; n--) {
      const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) line = lc.linePos(node.range[0]).line;
    }
    const field = path.length ? path.join('.') : '(top level)';
    return `${file}${line ? `:${line}` : ''}: ${field}: ${issue.message}`;
  });
  throw new GwError('CONFIG_INVALID', lines.join('\n'));
}

/** Reads and validates a YAML configuration file. */
export async function loadConfig<S extends z.ZodType>(file: string, schema: S): Promise<z.output<S>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new GwError('CONFIG_READ', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseConfig(text, schema, file);
}

/** A config field naming a DM auth type (`basic`, `md5`, `hmac` or a full `syncml:auth-*` name). */
export const authTypeSchema = z.string().transform((s, ctx): AuthType => {
  try {
    return parseAuthType(s);
  } catch {
    ctx.addIssue({ code: 'custom', message: `unknown auth type "${s}" (use basic, md5 or hmac)` });
    return z.NEVER;
  }
});
